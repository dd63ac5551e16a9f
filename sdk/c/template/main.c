/* {{name}}: a Shardline guest. Every record is a compact JSON event with a "type"; it is
 * routed to the topic of its type, with a "seen_by" property. */
#define _GNU_SOURCE
#include <string.h>

#include "shardline.h"

int shardline_on_record(const sl_record *r, const sl_context *ctx) {
  static const char key[] = "\"type\":\"";
  const char *data = (const char *)r->data, *type = memmem(data, r->len, key, sizeof key - 1);
  const char *end = NULL;
  if (type) {
    type += sizeof key - 1;
    end = memchr(type, '"', r->len - (size_t)(type - data));
  }
  if (!end) return sl_reject(SL_DESERIALIZE, "an event needs a \"type\" string");
  if ((size_t)(end - type) == 4 && memcmp(type, "ping", 4) == 0) return SL_OK; /* filtered out */
  sl_buf topic = {0};
  sl_buf_printf(&topic, "%s%.*s", sl_setting("topic_prefix", "persistent://public/default/events-"),
                (int)(end - type), type);
  sl_output *o = sl_emit(r->data, r->len);
  sl_output_key(o, r->partition_key);
  sl_output_property(o, "seen_by", sl_setting("seen_by", "{{name}}"));
  sl_output_topic(o, topic.ptr);
  sl_buf_free(&topic);
  return SL_OK;
}
