// The order logic of guest-examples/rust-orders (src/orders.rs), in plain JavaScript, plus
// the export of the `pipeline` world of shardline:connector@0.1.0 (at the end of the file).
//
// componentize-js builds one module, so logic and bindings share this file; the logic part
// uses nothing but the language (no TextEncoder, no Node APIs).
//
// To give byte-for-byte the same output as the Rust example, JSON is parsed and written the
// way serde_json does it (JSON.parse differs in error texts, number handling and key
// order): errors carry serde_json's message and line/column (columns count bytes);
// integers that fit in u64 (i64 when negative) stay exact integers (BigInt); floats are
// computed as serde_json computes them and written in its shortest form (`12.5`, `1500.0`,
// `1e+300`, `1e-7`); object keys are sorted by their UTF-8 bytes; output is compact.

import { setting } from "shardline:connector/host@0.1.0";

export const DEFAULT_TOPIC_PREFIX = "persistent://public/default/orders-";
export const DEFAULT_PROCESSED_BY = "shardline-orders";
export const REGION_PROPERTY = "order.region";
const HIGH_PRIORITY = "high";
const PRIORITY_TOPIC_SUFFIX = "priority";

const U64_MAX = (1n << 64n) - 1n;
const I64_MAX = (1n << 63n) - 1n;
const I32_MAX = 0x7fffffff;
const POW10 = Array.from({ length: 309 }, (_, i) => Number("1e" + i));
const RECURSION_LIMIT = 128;

// JSON numbers keep serde_json's three kinds.
class Num {
  constructor(kind, value) {
    this.kind = kind; // "u" (BigInt >= 0), "i" (BigInt < 0), "f" (number)
    this.value = value;
  }
  asF64() {
    return this.kind === "f" ? this.value : Number(this.value);
  }
}

class JsonError extends Error {}
class Reject extends Error {}

// --- JSON, the serde_json way ---------------------------------------------------------------

class Parser {
  constructor(bytes) {
    this.s = bytes;
    this.i = 0;
    this.depth = RECURSION_LIMIT;
  }

  pos(i) {
    let start = 0;
    let line = 1;
    for (let k = 0; k < i; k++) {
      if (this.s[k] === 0x0a) {
        line++;
        start = k + 1;
      }
    }
    return [line, i - start];
  }
  errorAt(i, msg) {
    const [line, col] = this.pos(i);
    return new JsonError(`invalid JSON at line ${line} column ${col}: ${msg}`);
  }
  error(msg) {
    return this.errorAt(this.i, msg);
  }
  peekError(msg) {
    return this.errorAt(Math.min(this.s.length, this.i + 1), msg);
  }
  peek() {
    return this.i < this.s.length ? this.s[this.i] : -1;
  }
  ws() {
    const s = this.s;
    while (this.i < s.length) {
      const c = s[this.i];
      if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) break;
      this.i++;
    }
    return this.peek();
  }

  value() {
    const c = this.ws();
    if (c < 0) throw this.peekError("EOF while parsing a value");
    switch (c) {
      case 0x6e:
        this.i++;
        this.ident("ull");
        return null;
      case 0x74:
        this.i++;
        this.ident("rue");
        return true;
      case 0x66:
        this.i++;
        this.ident("alse");
        return false;
      case 0x2d:
        this.i++;
        return this.number(false);
      case 0x22:
        this.i++;
        return this.string();
      case 0x5b: {
        this.enter();
        this.i++;
        const items = this.seq();
        this.depth++;
        this.endSeq();
        return items;
      }
      case 0x7b: {
        this.enter();
        this.i++;
        const obj = this.map();
        this.depth++;
        this.endMap();
        return obj;
      }
      default:
        if (c >= 0x30 && c <= 0x39) return this.number(true);
        throw this.peekError("expected value");
    }
  }

  enter() {
    this.depth--;
    if (this.depth === 0) throw this.peekError("recursion limit exceeded");
  }

  ident(rest) {
    for (let k = 0; k < rest.length; k++) {
      if (this.i >= this.s.length) throw this.error("EOF while parsing a value");
      const c = this.s[this.i++];
      if (c !== rest.charCodeAt(k)) throw this.error("expected ident");
    }
  }

  seq() {
    const items = [];
    let first = true;
    for (;;) {
      let c = this.ws();
      if (c < 0) throw this.peekError("EOF while parsing a list");
      if (c === 0x5d) return items;
      if (first) {
        first = false;
      } else if (c === 0x2c) {
        this.i++;
        c = this.ws();
        if (c === 0x5d) throw this.peekError("trailing comma");
        if (c < 0) throw this.peekError("EOF while parsing a value");
      } else {
        throw this.peekError("expected `,` or `]`");
      }
      items.push(this.value());
    }
  }

  endSeq() {
    const c = this.ws();
    if (c === 0x5d) {
      this.i++;
      return;
    }
    if (c === 0x2c) {
      this.i++;
      if (this.ws() === 0x5d) throw this.peekError("trailing comma");
      throw this.peekError("trailing characters");
    }
    if (c < 0) throw this.peekError("EOF while parsing a list");
    throw this.peekError("trailing characters");
  }

  map() {
    const obj = new Map();
    let first = true;
    for (;;) {
      let c = this.ws();
      if (c < 0) throw this.peekError("EOF while parsing an object");
      if (c === 0x7d) return obj;
      if (first) {
        first = false;
        if (c !== 0x22) throw this.peekError("key must be a string");
      } else if (c === 0x2c) {
        this.i++;
        c = this.ws();
        if (c === 0x7d) throw this.peekError("trailing comma");
        if (c < 0) throw this.peekError("EOF while parsing a value");
        if (c !== 0x22) throw this.peekError("key must be a string");
      } else {
        throw this.peekError("expected `,` or `}`");
      }
      this.i++;
      const key = this.string();
      c = this.ws();
      if (c === 0x3a) this.i++;
      else if (c < 0) throw this.peekError("EOF while parsing an object");
      else throw this.peekError("expected `:`");
      obj.set(key, this.value()); // a repeated key: the last one wins
    }
  }

  endMap() {
    const c = this.ws();
    if (c === 0x7d) {
      this.i++;
      return;
    }
    if (c === 0x2c) throw this.peekError("trailing comma");
    if (c < 0) throw this.peekError("EOF while parsing an object");
    throw this.peekError("trailing characters");
  }

  string() {
    const s = this.s;
    const n = s.length;
    const out = [];
    let start = this.i;
    for (;;) {
      let i = this.i;
      while (i < n) {
        const c = s[i];
        if (c === 0x22 || c === 0x5c || c < 0x20) break;
        i++;
      }
      this.i = i;
      if (i === n) throw this.error("EOF while parsing a string");
      const c = s[i];
      if (c === 0x22) {
        for (let k = start; k < i; k++) out.push(s[k]);
        this.i = i + 1;
        const text = decodeUtf8(out);
        if (typeof text === "number") {
          // serde_json points back from the closing quote to the first bad byte.
          const [line, col] = this.pos(this.i);
          const at = Math.max(0, col - (out.length - text));
          throw new JsonError(`invalid JSON at line ${line} column ${at}: invalid unicode code point`);
        }
        return text;
      }
      if (c === 0x5c) {
        for (let k = start; k < i; k++) out.push(s[k]);
        this.i = i + 1;
        this.escape(out);
        start = this.i;
      } else {
        this.i = i + 1;
        throw this.error("control character (\\u0000-\\u001F) found while parsing a string");
      }
    }
  }

  nextOrEof() {
    if (this.i >= this.s.length) throw this.error("EOF while parsing a string");
    return this.s[this.i++];
  }

  escape(out) {
    const c = this.nextOrEof();
    switch (c) {
      case 0x22:
      case 0x5c:
      case 0x2f:
        out.push(c);
        break;
      case 0x62:
        out.push(0x08);
        break;
      case 0x66:
        out.push(0x0c);
        break;
      case 0x6e:
        out.push(0x0a);
        break;
      case 0x72:
        out.push(0x0d);
        break;
      case 0x74:
        out.push(0x09);
        break;
      case 0x75:
        this.unicodeEscape(out);
        break;
      default:
        throw this.error("invalid escape");
    }
  }

  hex4() {
    if (this.s.length - this.i < 4) {
      this.i = this.s.length;
      throw this.error("EOF while parsing a string");
    }
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.s[this.i + k];
      let d;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      else d = -1;
      if (d < 0) {
        this.i += 4;
        throw this.error("invalid escape");
      }
      v = v * 16 + d;
    }
    this.i += 4;
    return v;
  }

  unicodeEscape(out) {
    const n = this.hex4();
    if (n >= 0xdc00 && n <= 0xdfff) throw this.error("lone leading surrogate in hex escape");
    if (n < 0xd800 || n > 0xdbff) {
      encodeCodePoint(n, out);
      return;
    }
    if (this.peek() < 0) throw this.error("EOF while parsing a string");
    if (this.peek() !== 0x5c) {
      this.i++;
      throw this.error("unexpected end of hex escape");
    }
    this.i++;
    if (this.peek() < 0) throw this.error("EOF while parsing a string");
    if (this.peek() !== 0x75) {
      this.i++;
      throw this.error("unexpected end of hex escape");
    }
    this.i++;
    const n2 = this.hex4();
    if (n2 < 0xdc00 || n2 > 0xdfff) throw this.error("lone leading surrogate in hex escape");
    encodeCodePoint(((n - 0xd800) << 10) + (n2 - 0xdc00) + 0x10000, out);
  }

  // Numbers (serde_json without `float_roundtrip`).

  digit() {
    const c = this.peek();
    return c >= 0x30 && c <= 0x39 ? c - 0x30 : -1;
  }

  number(positive) {
    if (this.i >= this.s.length) throw this.error("EOF while parsing a value");
    const c = this.s[this.i++];
    if (c === 0x30) {
      if (this.digit() >= 0) throw this.peekError("invalid number");
      return this.afterInteger(positive, 0n);
    }
    if (!(c >= 0x31 && c <= 0x39)) throw this.error("invalid number");
    let sig = BigInt(c - 0x30);
    for (;;) {
      const d = this.digit();
      if (d < 0) return this.afterInteger(positive, sig);
      const next = sig * 10n + BigInt(d);
      if (next > U64_MAX) return this.longInteger(positive, sig);
      this.i++;
      sig = next;
    }
  }

  afterInteger(positive, sig) {
    const c = this.peek();
    if (c === 0x2e) return this.decimal(positive, sig, 0);
    if (c === 0x65 || c === 0x45) return this.exponent(positive, sig, 0);
    if (positive) return new Num("u", sig);
    if (sig === 0n || sig > I64_MAX + 1n) return new Num("f", -Number(sig));
    return new Num("i", -sig);
  }

  longInteger(positive, sig) {
    let exp = 0;
    for (;;) {
      const c = this.peek();
      if (c >= 0x30 && c <= 0x39) {
        this.i++;
        exp++;
      } else if (c === 0x2e) return this.decimal(positive, sig, exp);
      else if (c === 0x65 || c === 0x45) return this.exponent(positive, sig, exp);
      else return this.fromParts(positive, sig, exp);
    }
  }

  decimal(positive, sig, expBefore) {
    this.i++;
    let after = 0;
    for (;;) {
      const d = this.digit();
      if (d < 0) break;
      const next = sig * 10n + BigInt(d);
      if (next > U64_MAX) {
        // Further digits are ignored (serde_json's parse_decimal_overflow).
        while (this.digit() >= 0) this.i++;
        const c = this.peek();
        if (c === 0x65 || c === 0x45) return this.exponent(positive, sig, expBefore + after);
        return this.fromParts(positive, sig, expBefore + after);
      }
      this.i++;
      sig = next;
      after--;
    }
    if (after === 0) {
      if (this.peek() < 0) throw this.peekError("EOF while parsing a value");
      throw this.peekError("invalid number");
    }
    const c = this.peek();
    if (c === 0x65 || c === 0x45) return this.exponent(positive, sig, expBefore + after);
    return this.fromParts(positive, sig, expBefore + after);
  }

  exponent(positive, sig, starting) {
    this.i++;
    let positiveExp = true;
    const sign = this.peek();
    if (sign === 0x2b) this.i++;
    else if (sign === 0x2d) {
      this.i++;
      positiveExp = false;
    }
    if (this.i >= this.s.length) throw this.error("EOF while parsing a value");
    const c = this.s[this.i++];
    if (!(c >= 0x30 && c <= 0x39)) throw this.error("invalid number");
    let exp = c - 0x30;
    for (;;) {
      const d = this.digit();
      if (d < 0) break;
      this.i++;
      if (exp * 10 + d > I32_MAX) {
        // serde_json's parse_exponent_overflow
        while (this.digit() >= 0) this.i++;
        if (sig !== 0n && positiveExp) throw this.error("number out of range");
        return new Num("f", positive ? 0 : -0);
      }
      exp = exp * 10 + d;
    }
    return this.fromParts(positive, sig, positiveExp ? starting + exp : starting - exp);
  }

  fromParts(positive, sig, exponent) {
    let f = Number(sig);
    for (;;) {
      const a = Math.abs(exponent);
      if (a < POW10.length) {
        if (exponent >= 0) {
          f *= POW10[a];
          if (f === Infinity) throw this.error("number out of range");
        } else {
          f /= POW10[a];
        }
        break;
      }
      if (f === 0) break;
      if (exponent >= 0) throw this.error("number out of range");
      f /= 1e308;
      exponent += 308;
    }
    return new Num("f", positive ? f : -f);
  }
}

function encodeCodePoint(cp, out) {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
  else if (cp < 0x10000)
    out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  else
    out.push(
      0xf0 | (cp >> 18),
      0x80 | ((cp >> 12) & 0x3f),
      0x80 | ((cp >> 6) & 0x3f),
      0x80 | (cp & 0x3f),
    );
}

/** Strict UTF-8 (as Rust's `str::from_utf8`), or the length of the valid prefix. */
function decodeUtf8(b) {
  let out = "";
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    let cp;
    let need;
    let min;
    if (c < 0x80) {
      out += String.fromCharCode(c);
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      cp = c & 0x1f;
      need = 1;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      cp = c & 0x0f;
      need = 2;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      cp = c & 0x07;
      need = 3;
      min = 0x10000;
    } else return i;
    if (i + need >= b.length) return i;
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if ((d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    out += String.fromCodePoint(cp);
    i += need + 1;
  }
  return out;
}

function parseJson(bytes) {
  const p = new Parser(bytes);
  const v = p.value();
  if (p.ws() >= 0) throw p.peekError("trailing characters");
  return v;
}

/** (digits, sci) of a positive finite number: shortest round-trip digits without
 * trailing zeros, and the decimal exponent of the first digit. */
function shortest(f) {
  const r = String(f); // shortest round-trip: '12.5', '1e+300', '1.5e-7', '0.001'
  const e = r.indexOf("e");
  const mantissa = e < 0 ? r : r.slice(0, e);
  const exp = e < 0 ? 0 : Number(r.slice(e + 1));
  const dot = mantissa.indexOf(".");
  const whole = dot < 0 ? mantissa : mantissa.slice(0, dot);
  const frac = dot < 0 ? "" : mantissa.slice(dot + 1);
  const digits = whole + frac;
  let sci = whole.length - 1 + exp;
  const stripped = digits.replace(/^0+/, "");
  sci -= digits.length - stripped.length;
  return [stripped.replace(/0+$/, "") || "0", sci];
}

/** A finite number as serde_json writes an f64 (zmij). */
function formatFloat(f) {
  if (f === 0) return Object.is(f, -0) ? "-0.0" : "0.0";
  const sign = f < 0 ? "-" : "";
  const [digits, sci] = shortest(Math.abs(f));
  if (sci >= -5 && sci <= 15) {
    if (sci >= digits.length - 1) return sign + digits + "0".repeat(sci - digits.length + 1) + ".0";
    if (sci >= 0) return sign + digits.slice(0, sci + 1) + "." + digits.slice(sci + 1);
    return sign + "0." + "0".repeat(-sci - 1) + digits;
  }
  const m = digits[0] + (digits.length > 1 ? "." + digits.slice(1) : "");
  return `${sign}${m}e${sci < 0 ? "-" : "+"}${Math.abs(sci)}`;
}

/** Rust's `f64::to_string` of a non-negative number: never an exponent. */
function plainDecimal(f) {
  if (f === 0) return "0";
  const [digits, sci] = shortest(f);
  if (sci < 0) return "0." + "0".repeat(-sci - 1) + digits;
  if (sci >= digits.length - 1) return digits + "0".repeat(sci - digits.length + 1);
  return digits.slice(0, sci + 1) + "." + digits.slice(sci + 1);
}

function quote(s) {
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const ch = s[k];
    const c = s.charCodeAt(k);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c < 0x20) out += "\\u00" + (c < 16 ? "0" : "") + c.toString(16);
    else out += ch;
  }
  return out + '"';
}

/** Order of UTF-8 bytes = order of code points (not of UTF-16 units). */
function compareKeys(a, b) {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const cx = x.value.codePointAt(0);
    const cy = y.value.codePointAt(0);
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

function dump(v) {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (v instanceof Num) return v.kind === "f" ? formatFloat(v.value) : v.value.toString();
  if (typeof v === "string") return quote(v);
  if (Array.isArray(v)) return "[" + v.map(dump).join(",") + "]";
  const keys = [...v.keys()].sort(compareKeys);
  return "{" + keys.map((k) => quote(k) + ":" + dump(v.get(k))).join(",") + "}";
}

function utf8(s) {
  const out = [];
  for (const ch of s) encodeCodePoint(ch.codePointAt(0), out);
  return Uint8Array.from(out);
}

function toJson(v) {
  return utf8(dump(v));
}

function rustDebug(s) {
  let out = '"';
  for (const ch of s) {
    const o = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (o === 0) out += "\\0";
    else if (o < 0x20 || (o >= 0x7f && o < 0xa0)) out += "\\u{" + o.toString(16) + "}";
    else out += ch;
  }
  return out + '"';
}

/** A JSON value for a rejection reason: scalars as JSON (long strings cut, in Rust's `{:?}`
 * form), containers by kind only. */
function describe(v) {
  if (Array.isArray(v)) return "an array";
  if (v instanceof Map) return "an object";
  if (typeof v === "string") {
    const chars = Array.from(v);
    if (chars.length > 40) return rustDebug(chars.slice(0, 40).join("")) + "\u2026";
  }
  return dump(v);
}

// --- the order ------------------------------------------------------------------------------

function required(doc, field) {
  if (!doc.has(field)) throw new Reject(`invalid order: missing field "${field}"`);
  return doc.get(field);
}

function nonEmptyString(doc, field) {
  const v = required(doc, field);
  if (typeof v !== "string" || v === "")
    throw new Reject(`invalid order: ${field} must be a non-empty string, got ${describe(v)}`);
}

/** The validated order (a Map); throws Reject with the reason. */
export function parseOrder(bytes) {
  let doc;
  try {
    doc = parseJson(bytes);
  } catch (e) {
    if (e instanceof JsonError) throw new Reject(e.message);
    throw e;
  }
  if (!(doc instanceof Map))
    throw new Reject(`invalid order: expected a JSON object, got ${describe(doc)}`);
  nonEmptyString(doc, "id");
  nonEmptyString(doc, "customer");
  const amount = required(doc, "amount");
  if (!(amount instanceof Num && amount.asF64() >= 0))
    throw new Reject(`invalid order: amount must be a non-negative number, got ${describe(amount)}`);
  const currency = required(doc, "currency");
  if (!(typeof currency === "string" && /^[A-Z]{3}$/.test(currency)))
    throw new Reject(
      `invalid order: currency must be 3 uppercase letters (ISO 4217), got ${describe(currency)}`,
    );
  nonEmptyString(doc, "region");
  if (doc.has("priority")) {
    const p = doc.get("priority");
    if (p !== null && typeof p !== "string")
      throw new Reject(`invalid order: priority must be a string, got ${describe(p)}`);
  }
  return doc;
}

/** amount × 100 rounded half away from zero on the amount's shortest decimal digits, as a
 * BigInt; null when it does not fit in an i64 or is negative. */
export function amountCents(amount) {
  if (amount.kind === "u") {
    const c = amount.value * 100n;
    return c <= I64_MAX ? c : null;
  }
  if (amount.kind === "i") return null;
  const f = amount.value;
  if (!(f >= 0 && f < 9.0e16)) return null;
  const text = plainDecimal(f);
  const dot = text.indexOf(".");
  const whole = dot < 0 ? text : text.slice(0, dot);
  const fraction = dot < 0 ? "" : text.slice(dot + 1);
  let cents = BigInt(whole) * 100n;
  const d = (k) => (k < fraction.length ? BigInt(fraction.charCodeAt(k) - 0x30) : 0n);
  cents += d(0) * 10n + d(1);
  if (fraction.length > 2 && fraction.charCodeAt(2) - 0x30 >= 5) cents += 1n;
  return cents;
}

function enrich(doc, processedBy) {
  const amount = doc.get("amount");
  if (amount.asF64() === 0) return false;
  const cents = amountCents(amount);
  if (cents === null) throw new Reject(`amount ${dump(amount)} is too large to express in cents`);
  doc.set("amount_cents", new Num("u", cents));
  doc.set("processed_by", processedBy);
  return true;
}

function topics(doc, prefix) {
  const t = [prefix + doc.get("region")];
  if (doc.get("priority") === HIGH_PRIORITY) t.push(prefix + PRIORITY_TOPIC_SUFFIX);
  return t;
}

/** The three stages fused. Returns null (filtered out), {key, payload, region, topics}, or
 * {stage, reason}. */
export function processRecord(bytes, settings) {
  let doc;
  try {
    doc = parseOrder(bytes);
  } catch (e) {
    if (e instanceof Reject) return { stage: "deserialize", reason: e.message };
    throw e;
  }
  try {
    if (!enrich(doc, settings.processedBy)) return null;
  } catch (e) {
    if (e instanceof Reject) return { stage: "transform", reason: e.message };
    throw e;
  }
  return {
    key: doc.get("id"),
    payload: toJson(doc),
    region: doc.get("region"),
    topics: topics(doc, settings.topicPrefix),
  };
}

// --- the component: world `pipeline` ---------------------------------------------------------

export const processor = {
  process(_ctx, records) {
    const settings = {
      topicPrefix: setting("topic_prefix") ?? DEFAULT_TOPIC_PREFIX,
      processedBy: setting("processed_by") ?? DEFAULT_PROCESSED_BY,
    };
    const outputs = [];
    const rejections = [];
    records.forEach((record, index) => {
      const p = processRecord(record.data, settings);
      if (p === null) return; // amount 0: filtered out on purpose
      if (p.stage !== undefined) {
        rejections.push({ index, stage: p.stage, reason: p.reason });
        return;
      }
      outputs.push({
        index,
        event: {
          key: p.key,
          payload: p.payload,
          properties: [[REGION_PROPERTY, p.region]],
          eventTimeMillis: undefined,
        },
        destinations: p.topics.map((topic) => ({
          sink: undefined,
          topic,
          partitionKey: undefined,
          explicitHashKey: undefined,
        })),
      });
    });
    return { outputs, rejections };
  },
};
