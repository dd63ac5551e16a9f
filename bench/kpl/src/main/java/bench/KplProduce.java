package bench;

import com.google.common.util.concurrent.FutureCallback;
import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.MoreExecutors;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.kinesis.producer.Attempt;
import software.amazon.kinesis.producer.KinesisProducer;
import software.amazon.kinesis.producer.KinesisProducerConfiguration;
import software.amazon.kinesis.producer.UserRecordResult;

/**
 * The KPL's counterpart of {@code shardline produce --sample random --count N --size S --keys K}:
 * N records of S random bytes, partition keys "k0".."k(K-1)" drawn at random, aggregation on,
 * at most {@code --max-outstanding} records inside the producer (Shardline's
 * {@code --max-outstanding-records}, 100,000 by default). Waits for every record's result and
 * prints one {@code kpl: key=value ...} line; exits 1 if any record failed.
 *
 * <pre>
 * java -cp 'target/classes:target/lib/*' bench.KplProduce --stream S --port 4573 \
 *   --count 1000000 --size 100 --keys 10000 [--rate-limit 100000] [--max-buffered-ms 100]
 *   [--max-outstanding 100000] [--oldest-future-tracker true]
 * </pre>
 *
 * <p>{@code --oldest-future-tracker false} turns off the KPL's EnableOldestFutureTracker (on by
 * default since 0.14.3): it keeps every outstanding future in a PriorityBlockingQueue and removes
 * each completed one with a linear search, so each result costs time proportional to the
 * records outstanding (awslabs/amazon-kinesis-producer#637).
 *
 * <p>CPU and memory of both processes (this JVM and the KPL's native child
 * {@code kinesis_producer}) are read here, from /proc, because the child is gone by the time the
 * JVM exits:
 *
 * <ul>
 *   <li>the child's peak RSS (VmHWM) is read from /proc/CHILD/status after the last result came
 *       back, before {@link KinesisProducer#destroy()} ends it;
 *   <li>the child's CPU is read from this JVM's own {@code cutime + cstime} (/proc/self/stat)
 *       after the child is gone: the kernel adds a child's CPU there once its parent has
 *       waited for it, and the JVM's process reaper waits for every child it started. We wait
 *       until /proc/CHILD is gone (a dead child that is not yet waited for stays there as a
 *       zombie), so the figure is the child's whole life, shutdown included. The KPL's native
 *       process is the only child of this JVM.
 *   <li>the JVM's own CPU ({@code utime + stime}) and VmHWM are read at the same moment.
 * </ul>
 */
public final class KplProduce {
  public static void main(String[] argv) throws Exception {
    String stream = null;
    long port = 0, count = 100, size = 100, keys = 0, rateLimit = 100_000, bufferedMs = 100;
    int maxOutstanding = 100_000;
    boolean futureTracker = true; // the KPL's default
    String endpoint = "127.0.0.1";
    for (int i = 0; i < argv.length; i += 2) {
      String v = argv[i + 1];
      switch (argv[i]) {
        case "--stream" -> stream = v;
        case "--endpoint" -> endpoint = v;
        case "--port" -> port = Long.parseLong(v);
        case "--count" -> count = Long.parseLong(v);
        case "--size" -> size = Long.parseLong(v);
        case "--keys" -> keys = Long.parseLong(v);
        case "--rate-limit" -> rateLimit = Long.parseLong(v);
        case "--max-buffered-ms" -> bufferedMs = Long.parseLong(v);
        case "--max-outstanding" -> maxOutstanding = Integer.parseInt(v);
        case "--oldest-future-tracker" -> futureTracker = Boolean.parseBoolean(v);
        default -> throw new IllegalArgumentException("unknown option " + argv[i]);
      }
    }
    if (stream == null || port == 0) {
      throw new IllegalArgumentException("--stream and --port are required");
    }

    long t0 = System.nanoTime();
    KinesisProducerConfiguration config =
        new KinesisProducerConfiguration()
            .setRegion("us-east-1")
            .setCredentialsProvider(
                StaticCredentialsProvider.create(AwsBasicCredentials.create("test", "test")))
            .setKinesisEndpoint(endpoint)
            .setKinesisPort(port)
            .setVerifyCertificate(false)
            // No metrics: nothing is collected, nothing is sent to CloudWatch (the endpoint
            // points at the local terminator anyway, so a stray upload could not leave the box).
            .setMetricsLevel("none")
            .setCloudwatchEndpoint(endpoint)
            .setCloudwatchPort(port)
            .setStsEndpoint(endpoint)
            .setStsPort(port)
            .setLogLevel("warning")
            .setAggregationEnabled(true)
            .setRecordMaxBufferedTime(bufferedMs)
            .setRateLimit(rateLimit)
            .setEnableOldestFutureTracker(futureTracker);
    KinesisProducer producer = new KinesisProducer(config);
    long started = System.nanoTime();
    // CPU spent so far (JVM start, class loading, unpacking and starting the native process):
    // reported as startup_cpu_s; the totals below include it.
    Optional<ProcessHandle> child =
        ProcessHandle.current().children()
            .filter(p -> p.info().command().orElse("").contains("kinesis_producer"))
            .findFirst();
    long childPid = child.map(ProcessHandle::pid).orElse(-1L);
    double startupCpu = cpu(stat("self"), 13) + (childPid > 0 ? cpu(stat("" + childPid), 13) : 0);

    Semaphore room = new Semaphore(maxOutstanding);
    AtomicLong ok = new AtomicLong(), failed = new AtomicLong(), retries = new AtomicLong();
    AtomicLong firstError = new AtomicLong();
    FutureCallback<UserRecordResult> callback =
        new FutureCallback<>() {
          @Override
          public void onSuccess(UserRecordResult r) {
            retries.addAndGet(r.getAttempts().size() - 1);
            (r.isSuccessful() ? ok : failed).incrementAndGet();
            room.release();
          }

          @Override
          public void onFailure(Throwable t) {
            if (failed.getAndIncrement() == 0) {
              System.err.println("kpl: first failure: " + describe(t));
            }
            room.release();
          }
        };
    SplittableRandom rng = new SplittableRandom();
    for (long i = 0; i < count; i++) {
      long k = keys == 0 ? i : rng.nextLong(keys);
      byte[] data = new byte[(int) size];
      rng.nextBytes(data);
      room.acquire();
      Futures.addCallback(
          producer.addUserRecord(stream, "k" + k, ByteBuffer.wrap(data)),
          callback,
          MoreExecutors.directExecutor());
    }
    producer.flushSync();
    room.acquire(maxOutstanding); // every callback has run
    double seconds = (System.nanoTime() - started) / 1e9;

    long nativeHwm = childPid > 0 ? statusKib("/proc/" + childPid + "/status", "VmHWM") : -1;
    producer.destroy();
    if (childPid > 0) {
      Path proc = Path.of("/proc/" + childPid);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (Files.exists(proc) && System.nanoTime() < deadline) {
        Thread.sleep(10);
      }
      if (Files.exists(proc)) {
        System.err.println("kpl: native process " + childPid + " still there after 30 s");
      }
    }
    String[] self = stat("self");
    double jvmCpu = cpu(self, 13); // utime + stime
    double nativeCpu = cpu(self, 15); // cutime + cstime: the waited-for native process
    long jvmHwm = statusKib("/proc/self/status", "VmHWM");

    System.err.printf(
        "kpl: stream=%s records=%d stored=%d failed=%d retries=%d startup_seconds=%.3f"
            + " seconds=%.3f records_per_sec=%.0f startup_cpu_s=%.2f jvm_cpu_s=%.2f native_cpu_s=%.2f"
            + " jvm_hwm_mib=%d native_hwm_mib=%d oldest_future_tracker=%b%n",
        stream, count, ok.get(), failed.get(), retries.get(), (started - t0) / 1e9, seconds,
        ok.get() / seconds, startupCpu, jvmCpu, nativeCpu, jvmHwm / 1024, nativeHwm / 1024,
        futureTracker);
    System.exit(failed.get() == 0 && ok.get() == count ? 0 : 1);
  }

  private static String describe(Throwable t) {
    if (t instanceof software.amazon.kinesis.producer.UserRecordFailedException e) {
      List<Attempt> attempts = e.getResult().getAttempts();
      if (!attempts.isEmpty()) {
        Attempt last = attempts.get(attempts.size() - 1);
        return last.getErrorCode() + ": " + last.getErrorMessage();
      }
    }
    return t.toString();
  }

  /** Seconds in two consecutive clock-tick fields of /proc/PID/stat: utime+stime at 13,
   * cutime+cstime at 15. */
  private static double cpu(String[] stat, int field) {
    // USER_HZ is 100 on every Linux this runs on (getconf CLK_TCK).
    return (Long.parseLong(stat[field]) + Long.parseLong(stat[field + 1])) / 100.0;
  }

  /**
   * Fields of /proc/PID/stat, index = proc(5)'s field number - 1 (utime at 13), split after
   * the command name (which may hold spaces).
   */
  private static String[] stat(String pid) throws IOException {
    String s = Files.readString(Path.of("/proc/" + pid + "/stat"));
    String rest = s.substring(s.lastIndexOf(')') + 2);
    String[] after = rest.trim().split(" ");
    String[] fields = new String[after.length + 2]; // fields[0] pid, [1] comm, as in proc(5)
    System.arraycopy(after, 0, fields, 2, after.length);
    return fields;
  }

  private static long statusKib(String file, String key) throws IOException {
    for (String line : Files.readAllLines(Path.of(file))) {
      if (line.startsWith(key + ":")) {
        return Long.parseLong(line.replaceAll("[^0-9]", ""));
      }
    }
    return -1;
  }
}
