package bench;

import java.net.URI;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.api.TypedMessageBuilder;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.exceptions.InvalidStateException;
import software.amazon.kinesis.exceptions.ShutdownException;
import software.amazon.kinesis.exceptions.ThrottlingException;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.metrics.MetricsLevel;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.processor.RecordProcessorCheckpointer;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.SingleStreamTracker;
import software.amazon.kinesis.retrieval.KinesisClientRecord;
import software.amazon.kinesis.retrieval.polling.PollingConfig;

/**
 * The AWS KCL doing what `shardline run` does in bench/passthrough/run.sh: read a stream from
 * TRIM_HORIZON by polling, send each record's data to one Pulsar topic (key = partition key),
 * and checkpoint, every 10 s, only records Pulsar has acknowledged (at-least-once).
 *
 * <p>A minimal, conventional record processor: processRecords sends the batch, waits for
 * every acknowledgement (resending any send that failed), then checkpoints the batch's last
 * record if the last checkpoint is 10 s old. The KCL runs one processRecords at a time per
 * shard, so the shards proceed in parallel and each shard's batches one after another.
 *
 * <p>Everything else is the KCL's defaults (KCL 3.x: lease assignment by worker
 * utilisation, lease, coordinator-state and worker-metrics tables in DynamoDB; polling with
 * at most 10,000 records per GetRecords and at least 1.5 s between two calls on one shard),
 * except: polling instead of enhanced fan-out, TRIM_HORIZON, CloudWatch metrics off
 * (NullMetricsFactory, MetricsLevel NONE) and HTTP/1.1 (the emulators speak plain HTTP, so
 * HTTP/2, the KCL's default for Kinesis, is not available). The Kinesis client keeps the SDK's
 * default wire format, CBOR, which ferrokinesis accepts.
 *
 * <p>The Pulsar producer sends one message per send (batching off), blocking when its queue
 * is full, like Shardline's Pulsar sink; --batching turns the Java client's batching on.
 *
 * <p>Messages are shaped as the Pulsar IO Kinesis source shapes them, as Shardline's are:
 * key = partition key, event time = approximate arrival, and the properties
 * kinesis.partition.key, kinesis.sequence.number, kinesis.arrival.timestamp
 * (Instant.toString()) and kinesis.encryption.type. --properties none sends the key and data
 * only (what the first comparisons in BENCHMARKS.md measured).
 */
public final class KclPassthrough {
  private static Producer<byte[]> producer;
  private static long checkpointNanos = TimeUnit.SECONDS.toNanos(10);
  private static boolean pulsarIoProperties = true;

  public static void main(String[] argv) throws Exception {
    // The KCL logs every lease renewal and fetch at INFO; -Dorg.slf4j.simpleLogger.defaultLogLevel=info
    // brings that back.
    if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
      System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    }
    Map<String, String> a = Args.parse(argv);
    String stream = a.get("stream");
    String app = a.get("application");
    String kinesisEndpoint = Args.or(a, "kinesis-endpoint", "SHARDLINE_KINESIS_ENDPOINT");
    String dynamodbEndpoint = Args.or(a, "dynamodb-endpoint", "SHARDLINE_DYNAMODB_ENDPOINT");
    String pulsarUrl = Args.or(a, "pulsar-url", "SHARDLINE_PULSAR_URL");
    String topic = a.get("topic");
    boolean batching = Boolean.parseBoolean(a.getOrDefault("batching", "false"));
    checkpointNanos = TimeUnit.SECONDS.toNanos(Long.parseLong(a.getOrDefault("checkpoint-seconds", "10")));
    String properties = a.getOrDefault("properties", "pulsar-io");
    if (!properties.equals("pulsar-io") && !properties.equals("none")) {
      System.err.println("--properties must be pulsar-io or none, not " + properties);
      System.exit(2);
    }
    pulsarIoProperties = properties.equals("pulsar-io");
    if (stream == null || app == null || topic == null || kinesisEndpoint == null
        || dynamodbEndpoint == null || pulsarUrl == null) {
      System.err.println("usage: KclPassthrough --stream S --application A --topic T"
          + " [--kinesis-endpoint URL] [--dynamodb-endpoint URL] [--pulsar-url URL]"
          + " [--batching true] [--checkpoint-seconds 10] [--properties pulsar-io|none]\n"
          + "  endpoints default to $SHARDLINE_KINESIS_ENDPOINT, $SHARDLINE_DYNAMODB_ENDPOINT,"
          + " $SHARDLINE_PULSAR_URL");
      System.exit(2);
    }

    PulsarClient pulsar = PulsarClient.builder().serviceUrl(pulsarUrl).build();
    producer = pulsar.newProducer(Schema.BYTES)
        .topic(topic)
        .enableBatching(batching)
        .blockIfQueueFull(true)
        .create();

    Region region = Region.US_EAST_1;
    StaticCredentialsProvider credentials =
        StaticCredentialsProvider.create(AwsBasicCredentials.create("test", "test"));
    KinesisAsyncClient kinesis = KinesisAsyncClient.builder()
        .region(region)
        .credentialsProvider(credentials)
        .endpointOverride(URI.create(kinesisEndpoint))
        .httpClientBuilder(NettyNioAsyncHttpClient.builder().protocol(Protocol.HTTP1_1))
        .build();
    DynamoDbAsyncClient dynamodb = DynamoDbAsyncClient.builder()
        .region(region)
        .credentialsProvider(credentials)
        .endpointOverride(URI.create(dynamodbEndpoint))
        .httpClientBuilder(NettyNioAsyncHttpClient.builder().protocol(Protocol.HTTP1_1))
        .build();
    // Required by ConfigsBuilder; never called, as the metrics factory below publishes nothing.
    CloudWatchAsyncClient cloudwatch = CloudWatchAsyncClient.builder()
        .region(region)
        .credentialsProvider(credentials)
        .endpointOverride(URI.create("http://127.0.0.1:9"))
        .build();

    ConfigsBuilder cb = new ConfigsBuilder(
        new SingleStreamTracker(stream,
            InitialPositionInStreamExtended.newInitialPosition(InitialPositionInStream.TRIM_HORIZON)),
        app, kinesis, dynamodb, cloudwatch, "kcl-bench-" + ProcessHandle.current().pid(),
        Processor::new);
    Scheduler scheduler = new Scheduler(
        cb.checkpointConfig(),
        cb.coordinatorConfig(),
        cb.leaseManagementConfig(),
        cb.lifecycleConfig(),
        cb.metricsConfig().metricsFactory(new NullMetricsFactory()).metricsLevel(MetricsLevel.NONE),
        cb.processorConfig(),
        cb.retrievalConfig().retrievalSpecificConfig(new PollingConfig(stream, kinesis)));

    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        scheduler.startGracefulShutdown().get(20, TimeUnit.SECONDS);
        producer.close();
        pulsar.close();
      } catch (Exception e) {
        System.err.println("shutdown: " + e);
      }
    }));
    System.err.printf("kcl-bench: stream=%s application=%s topic=%s batching=%s%n",
        stream, app, topic, batching);
    scheduler.run();
  }

  /** One per shard lease; the KCL calls it from one thread at a time. */
  static final class Processor implements ShardRecordProcessor {
    private String shardId;
    private long lastCheckpoint = System.nanoTime();

    @Override
    public void initialize(InitializationInput input) {
      shardId = input.shardId();
    }

    @Override
    public void processRecords(ProcessRecordsInput input) {
      List<KinesisClientRecord> records = input.records();
      if (records.isEmpty()) {
        return;
      }
      sendAll(records);
      if (System.nanoTime() - lastCheckpoint >= checkpointNanos) {
        checkpoint(input.checkpointer(), records.get(records.size() - 1));
      }
    }

    /** Sends every record and returns once Pulsar has acknowledged them all. */
    private static void sendAll(List<KinesisClientRecord> records) {
      List<KinesisClientRecord> pending = records;
      while (!pending.isEmpty()) {
        List<CompletableFuture<?>> acks = new ArrayList<>(pending.size());
        for (KinesisClientRecord r : pending) {
          ByteBuffer data = r.data();
          byte[] bytes = new byte[data.remaining()];
          data.get(bytes);
          acks.add(message(r, bytes).sendAsync());
        }
        List<KinesisClientRecord> failed = new ArrayList<>();
        for (int i = 0; i < acks.size(); i++) {
          try {
            acks.get(i).join();
          } catch (RuntimeException e) {
            failed.add(pending.get(i));
          }
        }
        if (!failed.isEmpty()) {
          System.err.printf("kcl-bench: %d sends failed, resending%n", failed.size());
          for (KinesisClientRecord r : failed) {
            r.data().rewind();
          }
          sleep(500);
        }
        pending = failed;
      }
    }

    /** The message of one record: as the Pulsar IO Kinesis source builds it, or key and data. */
    private static TypedMessageBuilder<byte[]> message(KinesisClientRecord r, byte[] bytes) {
      TypedMessageBuilder<byte[]> m = producer.newMessage().key(r.partitionKey()).value(bytes);
      if (!pulsarIoProperties) {
        return m;
      }
      Map<String, String> p = new HashMap<>(8);
      p.put("kinesis.partition.key", r.partitionKey());
      p.put("kinesis.sequence.number", r.sequenceNumber());
      p.put("kinesis.arrival.timestamp", r.approximateArrivalTimestamp().toString());
      p.put("kinesis.encryption.type",
          r.encryptionType() == null ? "NONE" : r.encryptionType().toString());
      return m.properties(p).eventTime(r.approximateArrivalTimestamp().toEpochMilli());
    }

    private void checkpoint(RecordProcessorCheckpointer checkpointer, KinesisClientRecord last) {
      try {
        if (last == null) {
          checkpointer.checkpoint();
        } else {
          checkpointer.checkpoint(last.sequenceNumber(), last.subSequenceNumber());
        }
        lastCheckpoint = System.nanoTime();
      } catch (ThrottlingException e) {
        // Tried again after the next batch.
      } catch (ShutdownException | InvalidStateException e) {
        System.err.printf("kcl-bench: %s: checkpoint failed: %s%n", shardId, e);
      }
    }

    @Override
    public void leaseLost(LeaseLostInput input) {}

    @Override
    public void shardEnded(ShardEndedInput input) {
      // Every record handed to processRecords is acknowledged by now.
      checkpoint(input.checkpointer(), null);
    }

    @Override
    public void shutdownRequested(ShutdownRequestedInput input) {
      checkpoint(input.checkpointer(), null);
    }
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** --name value pairs. */
  static final class Args {
    static Map<String, String> parse(String[] argv) {
      Map<String, String> m = new java.util.HashMap<>();
      for (int i = 0; i + 1 < argv.length; i += 2) {
        if (!argv[i].startsWith("--")) {
          throw new IllegalArgumentException("expected --name, got " + argv[i]);
        }
        m.put(argv[i].substring(2), argv[i + 1]);
      }
      return m;
    }

    static String or(Map<String, String> m, String key, String env) {
      String v = m.get(key);
      return v != null ? v : System.getenv(env);
    }
  }
}
