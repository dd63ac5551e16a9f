/* Orders: validate JSON orders, enrich them and route them by region (a Shardline guest).
 * A small JSON scanner checks the whole record and notes where each top-level field's value
 * is; the enriched order is the record itself with two fields added before its final '}'. */
#define _GNU_SOURCE /* memrchr */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shardline.h"

#define MAX_FIELDS 64
#define MAX_CENTS 9007199254740991.0 /* 2^53 - 1: the largest integer a double holds exactly */
typedef struct { const char *p, *end; } span;
typedef struct {
  const char *p, *end;
  int depth, n;
  span key[MAX_FIELDS], val[MAX_FIELDS]; /* the order's fields */
} scanner;

static bool value(scanner *s); /* mutually recursive with container() */
static bool at(scanner *s, const char *set) { return s->p < s->end && *s->p && strchr(set, *s->p); }
static void ws(scanner *s) { while (at(s, " \t\r\n")) s->p++; }
static bool eat(scanner *s, char c) { ws(s); return s->p < s->end && *s->p == c && ++s->p; }
static bool digits(scanner *s) { const char *b = s->p; while (at(s, "0123456789")) s->p++; return s->p > b; }

static bool string(scanner *s) {
  if (!eat(s, '"')) return false;
  for (; s->p < s->end && *s->p != '"'; s->p++) {
    if ((unsigned char)*s->p < 0x20) return false;
    if (*s->p != '\\') continue;
    if (s->p++, !at(s, "\"\\/bfnrtu")) return false;
    if (*s->p == 'u')
      for (int i = 0; i < 4; i++)
        if (s->p++, !at(s, "0123456789abcdefABCDEF")) return false;
  }
  return s->p++ < s->end;
}

static bool number(scanner *s) {
  if (at(s, "-")) s->p++;
  if (at(s, "0")) s->p++;
  else if (!digits(s)) return false;
  if (at(s, ".") && (s->p++, !digits(s))) return false;
  if (at(s, "eE") && (s->p++, at(s, "+-") && s->p++, !digits(s))) return false;
  return true;
}

static bool word(scanner *s, const char *w) {
  size_t n = strlen(w);
  return (size_t)(s->end - s->p) >= n && !memcmp(s->p, w, n) && (s->p += n);
}

/* An object or array (after its opening bracket); in the order itself, notes the fields. */
static bool container(scanner *s, char close) {
  bool order = ++s->depth == 1 && close == '}';
  if (s->depth > 1000) return false;
  if (!eat(s, close)) {
    do {
      span key = {0}, val;
      if (close == '}' && (ws(s), key.p = s->p, !string(s) || (key.end = s->p, !eat(s, ':')))) return false;
      val.p = (ws(s), s->p);
      if (!value(s)) return false;
      val.end = s->p;
      if (order && s->n < MAX_FIELDS) s->key[s->n] = key, s->val[s->n++] = val;
    } while (eat(s, ','));
    if (!eat(s, close)) return false;
  }
  s->depth--;
  return true;
}

static bool value(scanner *s) {
  ws(s);
  if (eat(s, '{')) return container(s, '}');
  if (eat(s, '[')) return container(s, ']');
  if (at(s, "\"")) return string(s);
  return word(s, "true") || word(s, "false") || word(s, "null") || number(s);
}

/* Decodes a string token into `out`; false if the value is not a string. */
static bool text(span v, sl_buf *out) {
  out->len = 0;
  sl_buf_append(out, "", 0);
  if (!v.p || *v.p != '"') return false;
  for (const char *p = v.p + 1; p < v.end - 1; p++) {
    if (*p != '\\') {
      sl_buf_append(out, p, 1);
    } else if (*++p != 'u') { /* \b \f \n \r \t, else the character itself: \" \\ \/ */
      const char *e = strchr("b\bf\fn\nr\rt\t", *p);
      sl_buf_append(out, e ? e + 1 : p, 1);
    } else {
      char hex[5] = {0};
      uint32_t cp = (uint32_t)strtoul(memcpy(hex, p + 1, 4), NULL, 16);
      p += 4;
      if (cp >= 0xd800 && cp < 0xdc00 && p[1] == '\\' && p[2] == 'u') { /* surrogate pair */
        uint32_t lo = (uint32_t)strtoul(memcpy(hex, p + 3, 4), NULL, 16);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00), p += 6;
      }
      sl_buf_utf8(out, cp);
    }
  }
  return true;
}

/* The value of the last field called `name` (as JSON parsers keep the last duplicate). */
static span field(const scanner *s, const char *name) {
  sl_buf key = {0};
  span found = {0};
  for (int i = 0; i < s->n; i++)
    if (text(s->key[i], &key) && strcmp(key.ptr, name) == 0) found = s->val[i];
  sl_buf_free(&key);
  return found;
}

int shardline_on_record(const sl_record *r, const sl_context *ctx) {
  scanner s = {.p = (const char *)r->data, .end = (const char *)r->data + r->len};
  if (!sl_utf8_valid(r->data, r->len)) return sl_reject(SL_DESERIALIZE, "not UTF-8");
  if (!eat(&s, '{') || !container(&s, '}') || (ws(&s), s.p != s.end))
    return sl_reject(SL_DESERIALIZE, "not a JSON object (byte %zu)", (size_t)(s.p - (const char *)r->data));
  sl_buf id = {0}, customer = {0}, region = {0}, currency = {0}, priority = {0}, out = {0};
  span amount_text = field(&s, "amount"), prio = field(&s, "priority");
  bool is_number = amount_text.p && strchr("-0123456789", *amount_text.p);
  double amount = is_number ? strtod(amount_text.p, NULL) : -1, cents = round(amount * 100);
  int rc = SL_OK; /* or the rejection's code */
  if (!text(field(&s, "id"), &id) || !id.len) rc = sl_reject(SL_DESERIALIZE, "id must be a non-empty string");
  else if (!text(field(&s, "customer"), &customer) || !customer.len) rc = sl_reject(SL_DESERIALIZE, "customer must be a non-empty string");
  else if (!text(field(&s, "region"), &region) || !region.len) rc = sl_reject(SL_DESERIALIZE, "region must be a non-empty string");
  else if (!isfinite(amount) || amount < 0) rc = sl_reject(SL_DESERIALIZE, "amount must be a non-negative number");
  else if (!text(field(&s, "currency"), &currency) || currency.len != 3 ||
           strspn(currency.ptr, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3) rc = sl_reject(SL_DESERIALIZE, "currency must be 3 uppercase letters");
  else if (prio.p && !text(prio, &priority) && *prio.p != 'n') rc = sl_reject(SL_DESERIALIZE, "priority must be a string");
  else if (cents > MAX_CENTS) rc = sl_reject(SL_TRANSFORM, "amount %g is too large for cents", amount);
  else if (amount != 0) { /* amount 0: nothing to ship, filtered out */
    const char *prefix = sl_setting("topic_prefix", "persistent://public/default/orders-");
    const char *by = sl_setting("processed_by", "shardline-orders");
    const char *close = memrchr(r->data, '}', r->len); /* the order's own '}' */
    sl_buf_append(&out, r->data, (size_t)(close - (const char *)r->data));
    sl_buf_printf(&out, ",\"amount_cents\":%.0f,\"processed_by\":", cents);
    sl_buf_json_string(&out, by, strlen(by));
    sl_buf_puts(&out, "}");
    sl_output *o = sl_emit(out.ptr, out.len);
    sl_output_key_n(o, id.ptr, id.len);
    sl_output_property(o, "order.region", region.ptr);
    sl_output_topicf(o, "%s%s", prefix, region.ptr);
    if (priority.ptr && strcmp(priority.ptr, "high") == 0) sl_output_topicf(o, "%spriority", prefix);
  }
  sl_buf_free(&id), sl_buf_free(&customer), sl_buf_free(&region);
  sl_buf_free(&currency), sl_buf_free(&priority), sl_buf_free(&out);
  return rc;
}
