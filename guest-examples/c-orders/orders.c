/* The order logic of guest-examples/rust-orders (src/orders.rs), in C.
 *
 * To give byte-for-byte the same output as the Rust example, JSON is parsed and written
 * the way serde_json does it: its error messages with line and byte column, u64/i64
 * integers kept exact and other numbers computed as serde_json computes them (significand,
 * then powers of ten), floats written in serde_json's shortest form (`12.5`, `1500.0`,
 * `1e+300`, `1e-7`), object keys sorted by their UTF-8 bytes, compact output. */
#include "orders.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ---------------------------------------------------------------------------- */

static void buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap * 2 : 64;
  while (cap < b->len + extra) cap *= 2;
  char *p = realloc(b->ptr, cap);
  if (!p) abort();
  b->ptr = p;
  b->cap = cap;
}
static void buf_put(buf_t *b, const char *s, size_t n) {
  buf_reserve(b, n);
  if (n) memcpy(b->ptr + b->len, s, n);
  b->len += n;
}
static void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }
static void buf_putc(buf_t *b, char c) { buf_put(b, &c, 1); }
static void buf_printf(buf_t *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}
static void buf_free(buf_t *b) {
  free(b->ptr);
  b->ptr = NULL;
  b->len = b->cap = 0;
}

/* ---- JSON values ------------------------------------------------------------------------ */

typedef enum { J_NULL, J_TRUE, J_FALSE, J_U64, J_I64, J_F64, J_STR, J_ARR, J_OBJ } jtype_t;

typedef struct jv jv;
typedef struct jmember jmember;
struct jv {
  jtype_t t;
  union {
    uint64_t u;
    int64_t i;
    double f;
    struct {
      char *p;
      size_t n;
    } s;
    struct {
      jv *items;
      size_t n, cap;
    } a;
    struct {
      jmember *m;
      size_t n, cap;
    } o;
  };
};
struct jmember {
  char *k;
  size_t kn;
  jv v;
};

static void jv_free(jv *v) {
  switch (v->t) {
    case J_STR: free(v->s.p); break;
    case J_ARR:
      for (size_t i = 0; i < v->a.n; i++) jv_free(&v->a.items[i]);
      free(v->a.items);
      break;
    case J_OBJ:
      for (size_t i = 0; i < v->o.n; i++) {
        free(v->o.m[i].k);
        jv_free(&v->o.m[i].v);
      }
      free(v->o.m);
      break;
    default: break;
  }
  v->t = J_NULL;
}

static jv *obj_get(const jv *o, const char *key) {
  size_t kn = strlen(key);
  for (size_t i = 0; i < o->o.n; i++)
    if (o->o.m[i].kn == kn && memcmp(o->o.m[i].k, key, kn) == 0) return &o->o.m[i].v;
  return NULL;
}

/* Inserts (taking key and value); a repeated key replaces the value, as serde_json's map. */
static void obj_set(jv *o, char *k, size_t kn, jv v) {
  for (size_t i = 0; i < o->o.n; i++)
    if (o->o.m[i].kn == kn && memcmp(o->o.m[i].k, k, kn) == 0) {
      free(k);
      jv_free(&o->o.m[i].v);
      o->o.m[i].v = v;
      return;
    }
  if (o->o.n == o->o.cap) {
    o->o.cap = o->o.cap ? o->o.cap * 2 : 8;
    o->o.m = realloc(o->o.m, o->o.cap * sizeof(jmember));
    if (!o->o.m) abort();
  }
  o->o.m[o->o.n++] = (jmember){k, kn, v};
}

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) abort();
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

/* ---- parser (serde_json, without `float_roundtrip`) ------------------------------------- */

typedef struct {
  const uint8_t *s;
  size_t n, i;
  int depth;
  buf_t *err; /* set on error */
} parser_t;

static double POW10[309];
static bool pow10_ready;

static void pow10_init(void) {
  if (pow10_ready) return;
  char lit[8];
  for (int i = 0; i < 309; i++) {
    snprintf(lit, sizeof lit, "1e%d", i);
    POW10[i] = strtod(lit, NULL);
  }
  pow10_ready = true;
}

static void fail_at(parser_t *p, size_t at, const char *msg) {
  size_t start = 0, line = 1;
  for (size_t k = 0; k < at; k++)
    if (p->s[k] == '\n') {
      line++;
      start = k + 1;
    }
  buf_printf(p->err, "invalid JSON at line %zu column %zu: ", line, at - start);
  buf_puts(p->err, msg);
}
static bool fail(parser_t *p, const char *msg) { /* at the byte just consumed */
  fail_at(p, p->i, msg);
  return false;
}
static bool peek_fail(parser_t *p, const char *msg) { /* at the byte just peeked */
  fail_at(p, p->i + 1 < p->n ? p->i + 1 : p->n, msg);
  return false;
}
static int peek(parser_t *p) { return p->i < p->n ? p->s[p->i] : -1; }
static int ws(parser_t *p) {
  while (p->i < p->n) {
    uint8_t c = p->s[p->i];
    if (c != ' ' && c != '\n' && c != '\t' && c != '\r') break;
    p->i++;
  }
  return peek(p);
}

static bool parse_value(parser_t *p, jv *out);

static bool ident(parser_t *p, const char *rest) {
  for (; *rest; rest++) {
    if (p->i >= p->n) return fail(p, "EOF while parsing a value");
    if (p->s[p->i++] != (uint8_t)*rest) return fail(p, "expected ident");
  }
  return true;
}

static void put_utf8(buf_t *b, uint32_t cp) {
  char t[4];
  size_t n;
  if (cp < 0x80) {
    t[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    t[0] = (char)(0xC0 | (cp >> 6));
    t[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    t[0] = (char)(0xE0 | (cp >> 12));
    t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    t[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    t[0] = (char)(0xF0 | (cp >> 18));
    t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    t[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  buf_put(b, t, n);
}

/* Length of the longest valid UTF-8 prefix (Rust's `Utf8Error::valid_up_to`). */
static size_t utf8_valid_up_to(const uint8_t *b, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      cp = c & 0x1F;
      min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      cp = c & 0x0F;
      min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else
      return i;
    if (i + need >= n) return i;
    for (size_t k = 1; k <= need; k++) {
      if ((b[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (b[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += need + 1;
  }
  return n;
}

static bool hex4(parser_t *p, uint32_t *v) {
  if (p->n - p->i < 4) {
    p->i = p->n;
    return fail(p, "EOF while parsing a string");
  }
  uint32_t x = 0;
  for (int k = 0; k < 4; k++) {
    uint8_t c = p->s[p->i + k];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) {
      p->i += 4;
      return fail(p, "invalid escape");
    }
    x = x * 16 + (uint32_t)d;
  }
  p->i += 4;
  *v = x;
  return true;
}

static bool unicode_escape(parser_t *p, buf_t *out) {
  uint32_t n, n2;
  if (!hex4(p, &n)) return false;
  if (n >= 0xDC00 && n <= 0xDFFF) return fail(p, "lone leading surrogate in hex escape");
  if (n < 0xD800 || n > 0xDBFF) {
    put_utf8(out, n);
    return true;
  }
  if (peek(p) < 0) return fail(p, "EOF while parsing a string");
  if (peek(p) != '\\') {
    p->i++;
    return fail(p, "unexpected end of hex escape");
  }
  p->i++;
  if (peek(p) < 0) return fail(p, "EOF while parsing a string");
  if (peek(p) != 'u') {
    p->i++;
    return fail(p, "unexpected end of hex escape");
  }
  p->i++;
  if (!hex4(p, &n2)) return false;
  if (n2 < 0xDC00 || n2 > 0xDFFF) return fail(p, "lone leading surrogate in hex escape");
  put_utf8(out, (((n - 0xD800) << 10) | (n2 - 0xDC00)) + 0x10000);
  return true;
}

/* After the opening quote; the string is returned malloc'ed in *s, *sn. */
static bool parse_string(parser_t *p, char **s, size_t *sn) {
  buf_t out = {0};
  size_t start = p->i;
  for (;;) {
    size_t i = p->i;
    while (i < p->n && p->s[i] != '"' && p->s[i] != '\\' && p->s[i] >= 0x20) i++;
    p->i = i;
    if (i == p->n) {
      buf_free(&out);
      return fail(p, "EOF while parsing a string");
    }
    uint8_t c = p->s[i];
    if (c == '"') {
      buf_put(&out, (const char *)p->s + start, i - start);
      p->i = i + 1;
      size_t valid = utf8_valid_up_to((const uint8_t *)out.ptr, out.len);
      if (valid != out.len) {
        /* serde_json points back from the closing quote to the first bad byte. */
        size_t back = out.len - valid;
        size_t col_start = 0, line = 1;
        for (size_t k = 0; k < p->i; k++)
          if (p->s[k] == '\n') {
            line++;
            col_start = k + 1;
          }
        size_t col = p->i - col_start;
        buf_printf(p->err, "invalid JSON at line %zu column %zu: invalid unicode code point",
                   line, col > back ? col - back : 0);
        buf_free(&out);
        return false;
      }
      *sn = out.len;
      *s = dup_n(out.ptr ? out.ptr : "", out.len);
      buf_free(&out);
      return true;
    }
    if (c == '\\') {
      buf_put(&out, (const char *)p->s + start, i - start);
      p->i = i + 1;
      if (p->i >= p->n) {
        buf_free(&out);
        return fail(p, "EOF while parsing a string");
      }
      uint8_t e = p->s[p->i++];
      bool ok = true;
      switch (e) {
        case '"': buf_putc(&out, '"'); break;
        case '\\': buf_putc(&out, '\\'); break;
        case '/': buf_putc(&out, '/'); break;
        case 'b': buf_putc(&out, '\b'); break;
        case 'f': buf_putc(&out, '\f'); break;
        case 'n': buf_putc(&out, '\n'); break;
        case 'r': buf_putc(&out, '\r'); break;
        case 't': buf_putc(&out, '\t'); break;
        case 'u': ok = unicode_escape(p, &out); break;
        default: ok = fail(p, "invalid escape");
      }
      if (!ok) {
        buf_free(&out);
        return false;
      }
      start = p->i;
    } else {
      p->i = i + 1;
      buf_free(&out);
      return fail(p, "control character (\\u0000-\\u001F) found while parsing a string");
    }
  }
}

static bool from_parts(parser_t *p, bool positive, uint64_t sig, int64_t exponent, jv *out) {
  double f = (double)sig;
  for (;;) {
    int64_t a = exponent < 0 ? -exponent : exponent;
    if (a < 309) {
      if (exponent >= 0) {
        f *= POW10[a];
        if (isinf(f)) return fail(p, "number out of range");
      } else {
        f /= POW10[a];
      }
      break;
    }
    if (f == 0.0) break;
    if (exponent >= 0) return fail(p, "number out of range");
    f /= 1e308;
    exponent += 308;
  }
  out->t = J_F64;
  out->f = positive ? f : -f;
  return true;
}

static int digit(parser_t *p) {
  int c = peek(p);
  return c >= '0' && c <= '9' ? c - '0' : -1;
}

static bool parse_exponent(parser_t *p, bool positive, uint64_t sig, int64_t starting, jv *out) {
  p->i++;
  bool positive_exp = true;
  int c = peek(p);
  if (c == '+')
    p->i++;
  else if (c == '-') {
    p->i++;
    positive_exp = false;
  }
  if (p->i >= p->n) return fail(p, "EOF while parsing a value");
  c = p->s[p->i++];
  if (!(c >= '0' && c <= '9')) return fail(p, "invalid number");
  int64_t exp = c - '0';
  int d;
  while ((d = digit(p)) >= 0) {
    p->i++;
    if (exp * 10 + d > 0x7FFFFFFF) {
      while (digit(p) >= 0) p->i++;
      if (sig != 0 && positive_exp) return fail(p, "number out of range");
      out->t = J_F64;
      out->f = positive ? 0.0 : -0.0;
      return true;
    }
    exp = exp * 10 + d;
  }
  return from_parts(p, positive, sig, positive_exp ? starting + exp : starting - exp, out);
}

static bool parse_decimal(parser_t *p, bool positive, uint64_t sig, int64_t before, jv *out) {
  p->i++;
  int64_t after = 0;
  int d;
  while ((d = digit(p)) >= 0) {
    if (sig > (UINT64_MAX - (uint64_t)d) / 10) {
      while (digit(p) >= 0) p->i++; /* further digits are ignored */
      int c = peek(p);
      if (c == 'e' || c == 'E') return parse_exponent(p, positive, sig, before + after, out);
      return from_parts(p, positive, sig, before + after, out);
    }
    p->i++;
    sig = sig * 10 + (uint64_t)d;
    after--;
  }
  if (after == 0) {
    if (peek(p) < 0) return peek_fail(p, "EOF while parsing a value");
    return peek_fail(p, "invalid number");
  }
  int c = peek(p);
  if (c == 'e' || c == 'E') return parse_exponent(p, positive, sig, before + after, out);
  return from_parts(p, positive, sig, before + after, out);
}

static bool after_integer(parser_t *p, bool positive, uint64_t sig, jv *out) {
  int c = peek(p);
  if (c == '.') return parse_decimal(p, positive, sig, 0, out);
  if (c == 'e' || c == 'E') return parse_exponent(p, positive, sig, 0, out);
  if (positive) {
    out->t = J_U64;
    out->u = sig;
  } else if (sig == 0 || sig > (uint64_t)INT64_MAX + 1) {
    out->t = J_F64;
    out->f = -(double)sig;
  } else {
    out->t = J_I64;
    out->i = (int64_t)(0 - sig);
  }
  return true;
}

static bool parse_number(parser_t *p, bool positive, jv *out) {
  if (p->i >= p->n) return fail(p, "EOF while parsing a value");
  uint8_t c = p->s[p->i++];
  if (c == '0') {
    if (digit(p) >= 0) return peek_fail(p, "invalid number");
    return after_integer(p, positive, 0, out);
  }
  if (!(c >= '1' && c <= '9')) return fail(p, "invalid number");
  uint64_t sig = c - '0';
  int d;
  while ((d = digit(p)) >= 0) {
    if (sig > (UINT64_MAX - (uint64_t)d) / 10) {
      int64_t exp = 0;
      for (;;) {
        int e = peek(p);
        if (e >= '0' && e <= '9') {
          p->i++;
          exp++;
        } else if (e == '.')
          return parse_decimal(p, positive, sig, exp, out);
        else if (e == 'e' || e == 'E')
          return parse_exponent(p, positive, sig, exp, out);
        else
          return from_parts(p, positive, sig, exp, out);
      }
    }
    p->i++;
    sig = sig * 10 + (uint64_t)d;
  }
  return after_integer(p, positive, sig, out);
}

static bool enter(parser_t *p) {
  if (--p->depth == 0) return peek_fail(p, "recursion limit exceeded");
  return true;
}

static bool parse_array(parser_t *p, jv *out) {
  out->t = J_ARR;
  out->a.items = NULL;
  out->a.n = out->a.cap = 0;
  bool first = true;
  for (;;) {
    int c = ws(p);
    if (c < 0) return peek_fail(p, "EOF while parsing a list");
    if (c == ']') break;
    if (first)
      first = false;
    else if (c == ',') {
      p->i++;
      c = ws(p);
      if (c == ']') return peek_fail(p, "trailing comma");
      if (c < 0) return peek_fail(p, "EOF while parsing a value");
    } else
      return peek_fail(p, "expected `,` or `]`");
    if (out->a.n == out->a.cap) {
      out->a.cap = out->a.cap ? out->a.cap * 2 : 8;
      out->a.items = realloc(out->a.items, out->a.cap * sizeof(jv));
      if (!out->a.items) abort();
    }
    jv item = {.t = J_NULL};
    if (!parse_value(p, &item)) {
      jv_free(&item);
      return false;
    }
    out->a.items[out->a.n++] = item;
  }
  /* end_seq */
  p->depth++;
  p->i++;
  return true;
}

static bool parse_object(parser_t *p, jv *out) {
  out->t = J_OBJ;
  out->o.m = NULL;
  out->o.n = out->o.cap = 0;
  bool first = true;
  for (;;) {
    int c = ws(p);
    if (c < 0) return peek_fail(p, "EOF while parsing an object");
    if (c == '}') break;
    if (first) {
      first = false;
      if (c != '"') return peek_fail(p, "key must be a string");
    } else if (c == ',') {
      p->i++;
      c = ws(p);
      if (c == '}') return peek_fail(p, "trailing comma");
      if (c < 0) return peek_fail(p, "EOF while parsing a value");
      if (c != '"') return peek_fail(p, "key must be a string");
    } else
      return peek_fail(p, "expected `,` or `}`");
    p->i++;
    char *k;
    size_t kn;
    if (!parse_string(p, &k, &kn)) return false;
    c = ws(p);
    if (c == ':')
      p->i++;
    else {
      free(k);
      return peek_fail(p, c < 0 ? "EOF while parsing an object" : "expected `:`");
    }
    jv v = {.t = J_NULL};
    if (!parse_value(p, &v)) {
      free(k);
      jv_free(&v);
      return false;
    }
    obj_set(out, k, kn, v);
  }
  p->depth++;
  p->i++;
  return true;
}

static bool parse_value(parser_t *p, jv *out) {
  int c = ws(p);
  out->t = J_NULL;
  if (c < 0) return peek_fail(p, "EOF while parsing a value");
  switch (c) {
    case 'n': p->i++; out->t = J_NULL; return ident(p, "ull");
    case 't': p->i++; out->t = J_TRUE; return ident(p, "rue");
    case 'f': p->i++; out->t = J_FALSE; return ident(p, "alse");
    case '-': p->i++; return parse_number(p, false, out);
    case '"':
      p->i++;
      if (!parse_string(p, &out->s.p, &out->s.n)) return false;
      out->t = J_STR;
      return true;
    case '[': return enter(p) && (p->i++, parse_array(p, out));
    case '{': return enter(p) && (p->i++, parse_object(p, out));
    default:
      if (c >= '0' && c <= '9') return parse_number(p, true, out);
      return peek_fail(p, "expected value");
  }
}

static bool parse_json(const uint8_t *s, size_t n, jv *out, buf_t *err) {
  pow10_init();
  parser_t p = {s, n, 0, 128, err};
  if (!parse_value(&p, out)) return false;
  if (ws(&p) >= 0) return peek_fail(&p, "trailing characters");
  return true;
}

/* ---- writer ----------------------------------------------------------------------------- */

/* Shortest round-trip decimal digits of a positive finite double (no trailing zeros) and
 * the decimal exponent of the first digit. */
static void shortest(double f, char digits[32], int *sci) {
  char tmp[40];
  for (int prec = 0; prec < 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec, f);
    if (strtod(tmp, NULL) == f || prec == 16) break;
  }
  /* tmp: d.ddde[+-]xx */
  size_t k = 0;
  const char *q = tmp;
  for (; *q && *q != 'e'; q++)
    if (*q != '.') digits[k++] = *q;
  while (k > 1 && digits[k - 1] == '0') k--;
  digits[k] = 0;
  *sci = atoi(q + 1);
}

static void write_float(buf_t *b, double f) {
  if (f == 0.0) {
    buf_puts(b, signbit(f) ? "-0.0" : "0.0");
    return;
  }
  if (f < 0) buf_putc(b, '-');
  char d[32];
  int sci;
  shortest(fabs(f), d, &sci);
  int len = (int)strlen(d);
  if (sci >= -5 && sci <= 15) {
    if (sci >= len - 1) {
      buf_puts(b, d);
      for (int i = 0; i < sci - len + 1; i++) buf_putc(b, '0');
      buf_puts(b, ".0");
    } else if (sci >= 0) {
      buf_put(b, d, (size_t)sci + 1);
      buf_putc(b, '.');
      buf_puts(b, d + sci + 1);
    } else {
      buf_puts(b, "0.");
      for (int i = 0; i < -sci - 1; i++) buf_putc(b, '0');
      buf_puts(b, d);
    }
    return;
  }
  buf_putc(b, d[0]);
  if (len > 1) {
    buf_putc(b, '.');
    buf_puts(b, d + 1);
  }
  buf_printf(b, "e%c%d", sci < 0 ? '-' : '+', sci < 0 ? -sci : sci);
}

static void write_string(buf_t *b, const char *s, size_t n) {
  buf_putc(b, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    switch (c) {
      case '"': buf_puts(b, "\\\""); break;
      case '\\': buf_puts(b, "\\\\"); break;
      case '\b': buf_puts(b, "\\b"); break;
      case '\f': buf_puts(b, "\\f"); break;
      case '\n': buf_puts(b, "\\n"); break;
      case '\r': buf_puts(b, "\\r"); break;
      case '\t': buf_puts(b, "\\t"); break;
      default:
        if (c < 0x20)
          buf_printf(b, "\\u%04x", c);
        else
          buf_putc(b, (char)c);
    }
  }
  buf_putc(b, '"');
}

static int cmp_members(const void *a, const void *b) {
  const jmember *x = *(const jmember *const *)a, *y = *(const jmember *const *)b;
  size_t n = x->kn < y->kn ? x->kn : y->kn;
  int c = memcmp(x->k, y->k, n);
  if (c) return c;
  return x->kn < y->kn ? -1 : x->kn > y->kn;
}

static void write_value(buf_t *b, const jv *v) {
  switch (v->t) {
    case J_NULL: buf_puts(b, "null"); break;
    case J_TRUE: buf_puts(b, "true"); break;
    case J_FALSE: buf_puts(b, "false"); break;
    case J_U64: buf_printf(b, "%llu", (unsigned long long)v->u); break;
    case J_I64: buf_printf(b, "%lld", (long long)v->i); break;
    case J_F64: write_float(b, v->f); break;
    case J_STR: write_string(b, v->s.p, v->s.n); break;
    case J_ARR:
      buf_putc(b, '[');
      for (size_t i = 0; i < v->a.n; i++) {
        if (i) buf_putc(b, ',');
        write_value(b, &v->a.items[i]);
      }
      buf_putc(b, ']');
      break;
    case J_OBJ: {
      const jmember **sorted = malloc(sizeof(jmember *) * (v->o.n ? v->o.n : 1));
      if (!sorted) abort();
      for (size_t i = 0; i < v->o.n; i++) sorted[i] = &v->o.m[i];
      qsort(sorted, v->o.n, sizeof *sorted, cmp_members);
      buf_putc(b, '{');
      for (size_t i = 0; i < v->o.n; i++) {
        if (i) buf_putc(b, ',');
        write_string(b, sorted[i]->k, sorted[i]->kn);
        buf_putc(b, ':');
        write_value(b, &sorted[i]->v);
      }
      buf_putc(b, '}');
      free(sorted);
      break;
    }
  }
}

/* Rust's `{:?}` of the first 40 characters of a string. */
static void write_debug_cut(buf_t *b, const char *s, size_t n) {
  buf_putc(b, '"');
  size_t chars = 0;
  for (size_t i = 0; i < n && chars < 40; chars++) {
    unsigned char c = (unsigned char)s[i];
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = c;
    if (len == 2) cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3F);
    switch (c) {
      case '"': buf_puts(b, "\\\""); break;
      case '\\': buf_puts(b, "\\\\"); break;
      case '\n': buf_puts(b, "\\n"); break;
      case '\r': buf_puts(b, "\\r"); break;
      case '\t': buf_puts(b, "\\t"); break;
      case 0: buf_puts(b, "\\0"); break;
      default:
        if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
          buf_printf(b, "\\u{%x}", (unsigned)cp);
        else
          buf_put(b, s + i, len);
    }
    i += len;
  }
  buf_puts(b, "\"\xE2\x80\xA6"); /* … */
}

static size_t char_count(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) c++;
  return c;
}

/* A JSON value for a rejection reason: scalars as JSON (long strings cut), containers by
 * kind only. */
static void describe(buf_t *b, const jv *v) {
  if (v->t == J_ARR)
    buf_puts(b, "an array");
  else if (v->t == J_OBJ)
    buf_puts(b, "an object");
  else if (v->t == J_STR && char_count(v->s.p, v->s.n) > 40)
    write_debug_cut(b, v->s.p, v->s.n);
  else
    write_value(b, v);
}

/* ---- the order -------------------------------------------------------------------------- */

static bool reject_field(buf_t *reason, const char *field, const char *rule, const jv *v) {
  buf_printf(reason, "invalid order: %s %s, got ", field, rule);
  describe(reason, v);
  return false;
}

static bool required(const jv *doc, const char *field, const jv **v, buf_t *reason) {
  *v = obj_get(doc, field);
  if (*v) return true;
  buf_printf(reason, "invalid order: missing field \"%s\"", field);
  return false;
}

static bool non_empty_string(const jv *doc, const char *field, buf_t *reason) {
  const jv *v;
  if (!required(doc, field, &v, reason)) return false;
  if (v->t == J_STR && v->s.n > 0) return true;
  return reject_field(reason, field, "must be a non-empty string", v);
}

static double as_f64(const jv *v) {
  return v->t == J_U64 ? (double)v->u : v->t == J_I64 ? (double)v->i : v->f;
}
static bool is_number(const jv *v) { return v->t == J_U64 || v->t == J_I64 || v->t == J_F64; }

static bool validate(const jv *doc, buf_t *reason) {
  if (doc->t != J_OBJ) {
    buf_puts(reason, "invalid order: expected a JSON object, got ");
    describe(reason, doc);
    return false;
  }
  const jv *v;
  if (!non_empty_string(doc, "id", reason) || !non_empty_string(doc, "customer", reason))
    return false;
  if (!required(doc, "amount", &v, reason)) return false;
  if (!(is_number(v) && as_f64(v) >= 0.0))
    return reject_field(reason, "amount", "must be a non-negative number", v);
  if (!required(doc, "currency", &v, reason)) return false;
  if (!(v->t == J_STR && v->s.n == 3 && v->s.p[0] >= 'A' && v->s.p[0] <= 'Z' &&
        v->s.p[1] >= 'A' && v->s.p[1] <= 'Z' && v->s.p[2] >= 'A' && v->s.p[2] <= 'Z'))
    return reject_field(reason, "currency", "must be 3 uppercase letters (ISO 4217)", v);
  if (!non_empty_string(doc, "region", reason)) return false;
  v = obj_get(doc, "priority");
  if (v && v->t != J_NULL && v->t != J_STR)
    return reject_field(reason, "priority", "must be a string", v);
  return true;
}

/* amount × 100 rounded half away from zero on the amount's shortest decimal digits (what
 * Rust's `f64::to_string` prints); false when it does not fit in an i64. */
static bool amount_cents(const jv *amount, int64_t *cents) {
  if (amount->t == J_U64) {
    if (amount->u > (uint64_t)INT64_MAX / 100) return false;
    *cents = (int64_t)(amount->u * 100);
    return true;
  }
  if (amount->t == J_I64) return false;
  double f = amount->f;
  if (!(f >= 0.0 && f < 9.0e16)) return false;
  if (f == 0.0) {
    *cents = 0;
    return true;
  }
  char d[32];
  int sci;
  shortest(f, d, &sci);
  int len = (int)strlen(d);
  int64_t whole = 0;
  for (int k = 0; k <= sci && k < 40; k++) whole = whole * 10 + (k < len ? d[k] - '0' : 0);
  /* fraction digit j (0-based) is d[sci + 1 + j] */
  int dig[3];
  for (int j = 0; j < 3; j++) {
    int k = sci + 1 + j;
    dig[j] = k >= 0 && k < len ? d[k] - '0' : 0;
  }
  bool more = sci + 3 < len; /* a third fraction digit exists */
  *cents = whole * 100 + dig[0] * 10 + dig[1] + (more && dig[2] >= 5 ? 1 : 0);
  return true;
}

static void set_owned(buf_t *dst, buf_t *src) {
  *dst = *src;
  memset(src, 0, sizeof *src);
}

void orders_result_free(orders_result_t *r) {
  buf_free(&r->reason);
  buf_free(&r->key);
  buf_free(&r->payload);
  buf_free(&r->region);
  for (size_t i = 0; i < 2; i++) buf_free(&r->topics[i]);
}

void orders_process(const uint8_t *data, size_t len, const orders_settings_t *settings,
                    orders_result_t *out) {
  memset(out, 0, sizeof *out);
  jv doc = {.t = J_NULL};
  buf_t reason = {0};
  if (!parse_json(data, len, &doc, &reason) || !validate(&doc, &reason)) {
    out->status = ORDERS_REJECTED;
    out->stage = ORDERS_DESERIALIZE;
    set_owned(&out->reason, &reason);
    jv_free(&doc);
    return;
  }
  jv *amount = obj_get(&doc, "amount");
  if (as_f64(amount) == 0.0) {
    out->status = ORDERS_FILTERED;
    jv_free(&doc);
    return;
  }
  int64_t cents;
  if (!amount_cents(amount, &cents)) {
    buf_puts(&reason, "amount ");
    write_value(&reason, amount);
    buf_puts(&reason, " is too large to express in cents");
    out->status = ORDERS_REJECTED;
    out->stage = ORDERS_TRANSFORM;
    set_owned(&out->reason, &reason);
    jv_free(&doc);
    return;
  }
  obj_set(&doc, dup_n("amount_cents", 12), 12, (jv){.t = J_U64, .u = (uint64_t)cents});
  jv by = {.t = J_STR};
  by.s.p = dup_n(settings->processed_by, settings->processed_by_len);
  by.s.n = settings->processed_by_len;
  obj_set(&doc, dup_n("processed_by", 12), 12, by);

  const jv *id = obj_get(&doc, "id"), *region = obj_get(&doc, "region");
  const jv *priority = obj_get(&doc, "priority");
  out->status = ORDERS_OK;
  buf_put(&out->key, id->s.p, id->s.n);
  buf_put(&out->region, region->s.p, region->s.n);
  buf_reserve(&out->payload, len + 64);
  write_value(&out->payload, &doc);
  buf_put(&out->topics[0], settings->topic_prefix, settings->topic_prefix_len);
  buf_put(&out->topics[0], region->s.p, region->s.n);
  out->topic_count = 1;
  if (priority && priority->t == J_STR && priority->s.n == 4 &&
      memcmp(priority->s.p, "high", 4) == 0) {
    buf_put(&out->topics[1], settings->topic_prefix, settings->topic_prefix_len);
    buf_puts(&out->topics[1], "priority");
    out->topic_count = 2;
  }
  jv_free(&doc);
}
