/* Shardline guest SDK for C: one callback per record, an output builder, settings, logging.
 *
 *   #include "shardline.h"
 *
 *   int shardline_on_record(const sl_record *r, const sl_context *ctx) {
 *     if (r->len == 0) return SL_OK;                       // no output: filtered out
 *     if (r->data[0] != '{') return sl_reject(SL_DESERIALIZE, "not a JSON object");
 *     sl_output *o = sl_emit(r->data, r->len);             // one output (call again to split)
 *     sl_output_topic(o, sl_setting("topic", "persistent://public/default/out"));
 *     return SL_OK;
 *   }
 *
 * The host calls the component once per batch (the `processor` export of the `pipeline` world
 * of shardline:connector@0.1.0); shardline.c calls shardline_on_record() for every record and
 * builds the one answer. A non-zero return rejects that record alone (with the reason given
 * to sl_reject(), its index and stage), so one bad record never fails its batch; outputs
 * emitted for a rejected record are dropped. Define shardline_on_batch() instead to see the
 * whole batch at once.
 *
 * Every string the SDK takes is copied; every string it returns stays valid for the life of
 * the component (settings) or of the call (record, context). */
#ifndef SHARDLINE_H
#define SHARDLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SL_DESERIALIZE, SL_TRANSFORM, SL_ROUTE } sl_stage;
typedef enum { SL_TRACE, SL_DEBUG, SL_INFO, SL_WARN, SL_ERROR } sl_level;

enum { SL_OK = 0, SL_REJECTED = -1 };

/* One Kinesis record (after KPL de-aggregation). `data` is not NUL-terminated. */
typedef struct {
  size_t index;              /* position in the batch */
  const char *partition_key; /* NUL-terminated */
  int64_t arrival_millis;    /* approximate arrival, ms since the Unix epoch */
  const uint8_t *data;
  size_t len;
} sl_record;

/* What is the same for the whole batch. */
typedef struct {
  const char *stream_name; /* NUL-terminated */
  const char *shard_id;    /* NUL-terminated */
  bool has_millis_behind_latest;
  uint64_t millis_behind_latest;
} sl_context;

typedef struct sl_output sl_output;

/* --- what you define: one of the two ------------------------------------------------ */

/* Called for every record: SL_OK (with 0, 1 or more sl_emit() calls) or a rejection. */
int shardline_on_record(const sl_record *record, const sl_context *ctx);
/* The whole batch at once; use sl_emit_at() and sl_reject_at(). */
void shardline_on_batch(const sl_record *records, size_t count, const sl_context *ctx);

/* --- outputs ------------------------------------------------------------------------ */

/* A new output of the current record with a copy of these bytes as its payload. */
sl_output *sl_emit(const void *payload, size_t len);
/* The same for record `index` (batch mode). */
sl_output *sl_emit_at(size_t index, const void *payload, size_t len);
/* Message key (default: the record's partition key). */
void sl_output_key(sl_output *o, const char *key);
void sl_output_key_n(sl_output *o, const char *key, size_t len);
/* One more message property. */
void sl_output_property(sl_output *o, const char *name, const char *value);
/* Event time, ms since the epoch (default: the arrival time). */
void sl_output_event_time(sl_output *o, int64_t millis);
/* Also to this topic (Pulsar) or stream (Kinesis) of the default sink. */
void sl_output_topic(sl_output *o, const char *topic);
/* The same, the topic written printf-style: sl_output_topicf(o, "%s%s", prefix, region). */
void sl_output_topicf(sl_output *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Also to a destination; NULL means "none/default" for each part (sink name of the config,
 * topic or stream, Kinesis partition key, Kinesis explicit hash key in decimal). No
 * destination at all means the default sink's default topic. */
void sl_output_destination(sl_output *o, const char *sink, const char *topic,
                           const char *partition_key, const char *explicit_hash_key);

/* --- rejections --------------------------------------------------------------------- */

/* Rejects the current record at `stage` with a printf-style reason; returns SL_REJECTED
 * so that `return sl_reject(...)` ends the callback. */
int sl_reject(sl_stage stage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sl_reject_at(size_t index, sl_stage stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- settings (the stage's `settings:` in the config) ------------------------------- */

const char *sl_setting(const char *key, const char *fallback);
long long sl_setting_int(const char *key, long long fallback);   /* fallback if malformed too */
double sl_setting_float(const char *key, double fallback);
bool sl_setting_bool(const char *key, bool fallback); /* true/false, yes/no, on/off, 1/0 */

/* --- logging (the host's log) -------------------------------------------------------- */

void sl_log(sl_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- a growable byte buffer, with JSON string escaping, for building payloads -------- */

typedef struct {
  char *ptr;
  size_t len, cap;
} sl_buf;

void sl_buf_append(sl_buf *b, const void *data, size_t len);
void sl_buf_puts(sl_buf *b, const char *s);
void sl_buf_printf(sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the code point `cp` encoded as UTF-8. */
void sl_buf_utf8(sl_buf *b, uint32_t cp);
/* Appends `s` as a quoted JSON string. */
void sl_buf_json_string(sl_buf *b, const char *s, size_t len);
void sl_buf_free(sl_buf *b);

/* Whether `len` bytes are well-formed UTF-8. */
bool sl_utf8_valid(const uint8_t *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
