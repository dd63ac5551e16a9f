/* Shardline guest SDK for C: the `processor` export over shardline_on_record().
 *
 * Builds on the bindings `wit-bindgen c` generates for the `pipeline` world (pipeline.h,
 * pipeline.c, committed beside this file). Following wit-bindgen's C conventions the export
 * owns its arguments (freed at the end of the call) and what it returns is freed by the
 * generated post-return function, so every buffer handed back is malloc'ed here. */
#include "shardline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipeline.h"

typedef shardline_connector_types_output_t wit_output;
typedef shardline_connector_types_rejection_t wit_rejection;
typedef shardline_connector_types_destination_t wit_destination;

/* The bindings expect the object file `wit-bindgen c` can write with the world's type
 * information; `shardline build-guest` embeds that information in the module instead,
 * so the symbol that would pull the object in is defined here. */
void __component_type_object_force_link_pipeline(void) {}

/* Weak: a component defines one of the two. */
int shardline_on_record(const sl_record *, const sl_context *) __attribute__((weak));
void shardline_on_batch(const sl_record *, size_t, const sl_context *) __attribute__((weak));

/* An sl_output* is the output's position + 1, not an address: the outputs array moves
 * when it grows, the handle stays valid for the whole call. */
#define SLOT(h) ((size_t)(uintptr_t)(h)-1)
#define HANDLE(slot) ((sl_output *)(uintptr_t)((slot) + 1))

static wit_output *outputs;
static size_t n_outputs, cap_outputs;
static wit_rejection *rejections;
static size_t n_rejections, cap_rejections;
static size_t current;
static bool current_rejected;

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) abort();
  return q;
}

/* printf into a new string (free it); its length in *len when len is not NULL. */
static char *vformat(size_t *len, const char *fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  size_t size = (size_t)(n < 0 ? 0 : n) + 1;
  char *s = xrealloc(NULL, size);
  if (n < 0) s[0] = 0;
  else vsnprintf(s, size, fmt, ap);
  if (len) *len = n < 0 ? 0 : (size_t)n;
  return s;
}

static pipeline_string_t str_copy(const char *s, size_t len) {
  pipeline_string_t r = {xrealloc(NULL, len), len};
  memcpy(r.ptr, s, len);
  return r;
}

static pipeline_option_string_t opt(const char *s) {
  pipeline_option_string_t o = {0};
  if (s) {
    o.is_some = true;
    o.val = str_copy(s, strlen(s));
  }
  return o;
}

static char *cstr(const pipeline_string_t *s) {
  char *c = xrealloc(NULL, s->len + 1);
  memcpy(c, s->ptr, s->len);
  c[s->len] = 0;
  return c;
}

/* --- outputs ---------------------------------------------------------------------- */

sl_output *sl_emit_at(size_t index, const void *payload, size_t len) {
  if (n_outputs == cap_outputs) {
    cap_outputs = cap_outputs ? cap_outputs * 2 : 64;
    outputs = xrealloc(outputs, cap_outputs * sizeof *outputs);
  }
  wit_output *o = &outputs[n_outputs];
  memset(o, 0, sizeof *o);
  o->index = (uint32_t)index;
  o->event.payload.ptr = xrealloc(NULL, len);
  memcpy(o->event.payload.ptr, payload, len);
  o->event.payload.len = len;
  return HANDLE(n_outputs++);
}

sl_output *sl_emit(const void *payload, size_t len) { return sl_emit_at(current, payload, len); }

void sl_output_key_n(sl_output *h, const char *key, size_t len) {
  pipeline_option_string_t *k = &outputs[SLOT(h)].event.key;
  if (k->is_some) pipeline_string_free(&k->val);
  k->is_some = true;
  k->val = str_copy(key, len);
}

void sl_output_key(sl_output *h, const char *key) { sl_output_key_n(h, key, strlen(key)); }

void sl_output_property(sl_output *h, const char *name, const char *value) {
  pipeline_list_tuple2_string_string_t *p = &outputs[SLOT(h)].event.properties;
  p->ptr = xrealloc(p->ptr, (p->len + 1) * sizeof *p->ptr);
  p->ptr[p->len].f0 = str_copy(name, strlen(name));
  p->ptr[p->len].f1 = str_copy(value, strlen(value));
  p->len++;
}

void sl_output_event_time(sl_output *h, int64_t millis) {
  outputs[SLOT(h)].event.event_time_millis.is_some = true;
  outputs[SLOT(h)].event.event_time_millis.val = millis;
}

void sl_output_destination(sl_output *h, const char *sink, const char *topic,
                           const char *partition_key, const char *explicit_hash_key) {
  shardline_connector_types_list_destination_t *d = &outputs[SLOT(h)].destinations;
  d->ptr = xrealloc(d->ptr, (d->len + 1) * sizeof *d->ptr);
  d->ptr[d->len].sink = opt(sink);
  d->ptr[d->len].topic = opt(topic);
  d->ptr[d->len].partition_key = opt(partition_key);
  d->ptr[d->len].explicit_hash_key = opt(explicit_hash_key);
  d->len++;
}

void sl_output_topic(sl_output *h, const char *topic) {
  sl_output_destination(h, NULL, topic, NULL, NULL);
}

void sl_output_topicf(sl_output *h, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *topic = vformat(NULL, fmt, ap);
  va_end(ap);
  sl_output_topic(h, topic);
  free(topic);
}

/* --- rejections ------------------------------------------------------------------- */

static int vreject(size_t index, sl_stage stage, const char *fmt, va_list ap) {
  char *reason = vformat(NULL, fmt, ap);
  if (n_rejections == cap_rejections) {
    cap_rejections = cap_rejections ? cap_rejections * 2 : 16;
    rejections = xrealloc(rejections, cap_rejections * sizeof *rejections);
  }
  wit_rejection *r = &rejections[n_rejections++];
  r->index = (uint32_t)index;
  r->stage = stage == SL_TRANSFORM ? SHARDLINE_CONNECTOR_TYPES_STAGE_TRANSFORM
             : stage == SL_ROUTE   ? SHARDLINE_CONNECTOR_TYPES_STAGE_ROUTE
                                   : SHARDLINE_CONNECTOR_TYPES_STAGE_DESERIALIZE;
  r->reason.ptr = (uint8_t *)reason;
  r->reason.len = strlen(reason);
  if (index == current) current_rejected = true;
  return SL_REJECTED;
}

int sl_reject(sl_stage stage, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vreject(current, stage, fmt, ap);
  va_end(ap);
  return r;
}

int sl_reject_at(size_t index, sl_stage stage, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vreject(index, stage, fmt, ap);
  va_end(ap);
  return r;
}

/* --- settings and logging --------------------------------------------------------- */

static pipeline_list_tuple2_string_string_t settings;
static char **setting_keys, **setting_values;
static bool settings_read;

const char *sl_setting(const char *key, const char *fallback) {
  if (!settings_read) { /* once: settings do not change for the life of an instance */
    shardline_connector_host_settings(&settings);
    setting_keys = xrealloc(NULL, settings.len * sizeof(char *));
    setting_values = xrealloc(NULL, settings.len * sizeof(char *));
    for (size_t i = 0; i < settings.len; i++) {
      setting_keys[i] = cstr(&settings.ptr[i].f0);
      setting_values[i] = cstr(&settings.ptr[i].f1);
    }
    settings_read = true;
  }
  for (size_t i = 0; i < settings.len; i++)
    if (strcmp(setting_keys[i], key) == 0) return setting_values[i];
  return fallback;
}

long long sl_setting_int(const char *key, long long fallback) {
  const char *v = sl_setting(key, NULL);
  char *end;
  if (!v) return fallback;
  long long n = strtoll(v, &end, 10);
  return end != v && *end == 0 ? n : fallback;
}

double sl_setting_float(const char *key, double fallback) {
  const char *v = sl_setting(key, NULL);
  char *end;
  if (!v) return fallback;
  double d = strtod(v, &end);
  return end != v && *end == 0 ? d : fallback;
}

bool sl_setting_bool(const char *key, bool fallback) {
  const char *v = sl_setting(key, NULL);
  if (!v) return fallback;
  if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
    return true;
  if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcmp(v, "0"))
    return false;
  return fallback;
}

void sl_log(sl_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n;
  char *text = vformat(&n, fmt, ap);
  va_end(ap);
  pipeline_string_t msg = {(uint8_t *)text, n};
  shardline_connector_host_log((shardline_connector_host_level_t)level, &msg);
  free(text);
}

/* --- buffers ---------------------------------------------------------------------- */

void sl_buf_append(sl_buf *b, const void *data, size_t len) {
  if (b->len + len + 1 > b->cap) {
    b->cap = (b->len + len + 1) * 2;
    b->ptr = xrealloc(b->ptr, b->cap);
  }
  memcpy(b->ptr + b->len, data, len);
  b->len += len;
  b->ptr[b->len] = 0;
}

void sl_buf_puts(sl_buf *b, const char *s) { sl_buf_append(b, s, strlen(s)); }

void sl_buf_printf(sl_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n;
  char *tmp = vformat(&n, fmt, ap);
  va_end(ap);
  sl_buf_append(b, tmp, n);
  free(tmp);
}

void sl_buf_utf8(sl_buf *b, uint32_t cp) {
  char u[4];
  size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  static const uint8_t lead[] = {0, 0, 0xc0, 0xe0, 0xf0};
  for (size_t i = n - 1; i > 0; i--, cp >>= 6) u[i] = (char)(0x80 | (cp & 0x3f));
  u[0] = (char)(lead[n] | cp);
  sl_buf_append(b, u, n);
}

void sl_buf_json_string(sl_buf *b, const char *s, size_t len) {
  sl_buf_append(b, "\"", 1);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      sl_buf_append(b, esc, 2);
    } else if (c < 0x20) {
      sl_buf_printf(b, "\\u%04x", c);
    } else {
      sl_buf_append(b, &s[i], 1);
    }
  }
  sl_buf_append(b, "\"", 1);
}

void sl_buf_free(sl_buf *b) {
  free(b->ptr);
  b->ptr = NULL;
  b->len = b->cap = 0;
}

bool sl_utf8_valid(const uint8_t *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint8_t c = s[i];
    size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 9;
    if (n == 9 || i + n >= len) return false;
    uint32_t cp = n == 0 ? c : c & (0x3f >> n);
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

/* --- the export ------------------------------------------------------------------- */

/* Frees the outputs [from, n_outputs) (those of a rejected record) and forgets them. */
static void drop_outputs(size_t from) {
  for (size_t i = from; i < n_outputs; i++) shardline_connector_types_output_free(&outputs[i]);
  n_outputs = from;
}

void exports_shardline_connector_processor_process(
    exports_shardline_connector_processor_batch_context_t *wctx,
    exports_shardline_connector_processor_list_source_record_t *wrecords,
    exports_shardline_connector_processor_processed_t *ret) {
  size_t n = wrecords->len;
  sl_record *records = xrealloc(NULL, n * sizeof *records);
  for (size_t i = 0; i < n; i++) {
    records[i].index = i;
    records[i].partition_key = cstr(&wrecords->ptr[i].partition_key);
    records[i].arrival_millis = wrecords->ptr[i].arrival_millis;
    records[i].data = wrecords->ptr[i].data.ptr;
    records[i].len = wrecords->ptr[i].data.len;
  }
  sl_context ctx = {cstr(&wctx->stream_name), cstr(&wctx->shard_id),
                    wctx->millis_behind_latest.is_some, wctx->millis_behind_latest.val};
  outputs = NULL;
  rejections = NULL;
  n_outputs = cap_outputs = n_rejections = cap_rejections = 0;

  if (shardline_on_batch) {
    current = (size_t)-1;
    shardline_on_batch(records, n, &ctx);
    /* A rejected record keeps no outputs. */
    bool *rejected = xrealloc(NULL, n * sizeof *rejected);
    memset(rejected, 0, n * sizeof *rejected);
    for (size_t i = 0; i < n_rejections; i++)
      if (rejections[i].index < n) rejected[rejections[i].index] = true;
    size_t kept = 0;
    for (size_t i = 0; i < n_outputs; i++) {
      if (outputs[i].index < n && !rejected[outputs[i].index])
        outputs[kept++] = outputs[i];
      else
        shardline_connector_types_output_free(&outputs[i]);
    }
    n_outputs = kept;
    free(rejected);
  } else if (shardline_on_record) {
    for (size_t i = 0; i < n; i++) {
      size_t first = n_outputs;
      current = i;
      current_rejected = false;
      int rc = shardline_on_record(&records[i], &ctx);
      if (rc != SL_OK || current_rejected) {
        drop_outputs(first);
        if (!current_rejected) sl_reject(SL_DESERIALIZE, "shardline_on_record returned %d", rc);
      }
    }
  } else {
    for (size_t i = 0; i < n; i++)
      sl_reject_at(i, SL_DESERIALIZE, "no shardline_on_record() in this component");
  }

  ret->outputs.ptr = outputs ? outputs : xrealloc(NULL, 1);
  ret->outputs.len = n_outputs;
  ret->rejections.ptr = rejections ? rejections : xrealloc(NULL, 1);
  ret->rejections.len = n_rejections;
  for (size_t i = 0; i < n; i++) free((char *)records[i].partition_key);
  free(records);
  free((char *)ctx.stream_name);
  free((char *)ctx.shard_id);
  exports_shardline_connector_processor_batch_context_free(wctx);
  exports_shardline_connector_processor_list_source_record_free(wrecords);
}
