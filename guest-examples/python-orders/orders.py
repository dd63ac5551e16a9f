"""The order logic of guest-examples/rust-orders (src/orders.rs), in plain Python.

No bindings here (app.py maps the WIT types onto these functions), so the logic also runs
under a normal CPython: `python3 -c 'import orders; print(orders.process(b"{}", orders.Settings()))'`.

To give byte-for-byte the same output as the Rust example, JSON is parsed and written the
way serde_json does it (the `json` module differs in error texts, number handling and key
order):

- errors carry serde_json's message and its line/column (columns count bytes);
- integers that fit in u64 (or i64 when negative) stay integers, anything else is a float
  computed as serde_json computes it (significand, then powers of ten);
- floats are written in the shortest form that reads back the same, as serde_json (zmij)
  writes them: `12.5`, `1500.0`, `1e+300`, `1e-7`;
- object keys are sorted by their UTF-8 bytes, the output is compact.
"""

DEFAULT_TOPIC_PREFIX = "persistent://public/default/orders-"
DEFAULT_PROCESSED_BY = "shardline-orders"
REGION_PROPERTY = "order.region"
HIGH_PRIORITY = "high"
PRIORITY_TOPIC_SUFFIX = "priority"

DESERIALIZE, TRANSFORM, ROUTE = "deserialize", "transform", "route"

U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
# serde_json's table of powers of ten (f64 literals, correctly rounded).
POW10 = [float("1e%d" % i) for i in range(309)]
RECURSION_LIMIT = 128


class Settings:
    def __init__(self, topic_prefix=DEFAULT_TOPIC_PREFIX, processed_by=DEFAULT_PROCESSED_BY):
        self.topic_prefix = topic_prefix
        self.processed_by = processed_by

    @staticmethod
    def from_lookup(lookup):
        prefix = lookup("topic_prefix")
        by = lookup("processed_by")
        return Settings(
            DEFAULT_TOPIC_PREFIX if prefix is None else prefix,
            DEFAULT_PROCESSED_BY if by is None else by,
        )


# --- JSON, the serde_json way -------------------------------------------------------------


class JsonError(Exception):
    pass


class _Parser:
    def __init__(self, data):
        self.s = data
        self.i = 0
        self.depth = RECURSION_LIMIT

    def _pos(self, i):
        start = self.s.rfind(b"\n", 0, i) + 1
        line = 1 + self.s.count(b"\n", 0, start)
        return line, i - start

    def error(self, msg):
        # Error at the byte just consumed.
        line, col = self._pos(self.i)
        return JsonError("invalid JSON at line %d column %d: %s" % (line, col, msg))

    def peek_error(self, msg):
        # Error at the byte just peeked.
        line, col = self._pos(min(len(self.s), self.i + 1))
        return JsonError("invalid JSON at line %d column %d: %s" % (line, col, msg))

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else None

    def ws(self):
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] in b" \n\t\r":
            self.i += 1
        return self.peek()

    def value(self):
        c = self.ws()
        if c is None:
            raise self.peek_error("EOF while parsing a value")
        if c == 0x6E:  # n
            self.i += 1
            self.ident(b"ull")
            return None
        if c == 0x74:  # t
            self.i += 1
            self.ident(b"rue")
            return True
        if c == 0x66:  # f
            self.i += 1
            self.ident(b"alse")
            return False
        if c == 0x2D:  # -
            self.i += 1
            return self.number(False)
        if 0x30 <= c <= 0x39:
            return self.number(True)
        if c == 0x22:
            self.i += 1
            return self.string()
        if c == 0x5B:  # [
            self.enter()
            self.i += 1
            items = self.seq()
            self.depth += 1
            self.end_seq()
            return items
        if c == 0x7B:  # {
            self.enter()
            self.i += 1
            obj = self.map()
            self.depth += 1
            self.end_map()
            return obj
        raise self.peek_error("expected value")

    def enter(self):
        self.depth -= 1
        if self.depth == 0:
            raise self.peek_error("recursion limit exceeded")

    def ident(self, rest):
        for b in rest:
            if self.i >= len(self.s):
                raise self.error("EOF while parsing a value")
            c = self.s[self.i]
            self.i += 1
            if c != b:
                raise self.error("expected ident")

    def seq(self):
        items = []
        first = True
        while True:
            c = self.ws()
            if c is None:
                raise self.peek_error("EOF while parsing a list")
            if c == 0x5D:
                return items
            if first:
                first = False
            elif c == 0x2C:
                self.i += 1
                c = self.ws()
                if c == 0x5D:
                    raise self.peek_error("trailing comma")
                if c is None:
                    raise self.peek_error("EOF while parsing a value")
            else:
                raise self.peek_error("expected `,` or `]`")
            items.append(self.value())

    def end_seq(self):
        c = self.ws()
        if c == 0x5D:
            self.i += 1
            return
        if c == 0x2C:
            self.i += 1
            if self.ws() == 0x5D:
                raise self.peek_error("trailing comma")
            raise self.peek_error("trailing characters")
        if c is None:
            raise self.peek_error("EOF while parsing a list")
        raise self.peek_error("trailing characters")

    def map(self):
        obj = {}
        first = True
        while True:
            c = self.ws()
            if c is None:
                raise self.peek_error("EOF while parsing an object")
            if c == 0x7D:
                return obj
            if first:
                first = False
                if c != 0x22:
                    raise self.peek_error("key must be a string")
            elif c == 0x2C:
                self.i += 1
                c = self.ws()
                if c == 0x7D:
                    raise self.peek_error("trailing comma")
                if c is None:
                    raise self.peek_error("EOF while parsing a value")
                if c != 0x22:
                    raise self.peek_error("key must be a string")
            else:
                raise self.peek_error("expected `,` or `}`")
            self.i += 1
            key = self.string()
            c = self.ws()
            if c == 0x3A:
                self.i += 1
            elif c is None:
                raise self.peek_error("EOF while parsing an object")
            else:
                raise self.peek_error("expected `:`")
            obj[key] = self.value()  # a repeated key: the last one wins

    def end_map(self):
        c = self.ws()
        if c == 0x7D:
            self.i += 1
            return
        if c == 0x2C:
            raise self.peek_error("trailing comma")
        if c is None:
            raise self.peek_error("EOF while parsing an object")
        raise self.peek_error("trailing characters")

    def string(self):
        s, n = self.s, len(self.s)
        out = bytearray()
        start = self.i
        while True:
            i = self.i
            while i < n and s[i] != 0x22 and s[i] != 0x5C and s[i] >= 0x20:
                i += 1
            self.i = i
            if i == n:
                raise self.error("EOF while parsing a string")
            c = s[i]
            if c == 0x22:
                out += s[start:i]
                self.i = i + 1
                try:
                    return out.decode("utf-8")
                except UnicodeDecodeError as e:
                    # serde_json points back from the closing quote to the first bad byte.
                    line, col = self._pos(self.i)
                    col = max(0, col - (len(out) - e.start))
                    raise JsonError("invalid JSON at line %d column %d: invalid unicode code point"
                                    % (line, col)) from None
            if c == 0x5C:
                out += s[start:i]
                self.i = i + 1
                self.escape(out)
                start = self.i
            else:
                self.i = i + 1
                raise self.error("control character (\\u0000-\\u001F) found while parsing a string")

    def next_or_eof(self):
        if self.i >= len(self.s):
            raise self.error("EOF while parsing a string")
        c = self.s[self.i]
        self.i += 1
        return c

    def escape(self, out):
        c = self.next_or_eof()
        simple = {0x22: b'"', 0x5C: b"\\", 0x2F: b"/", 0x62: b"\b", 0x66: b"\f",
                  0x6E: b"\n", 0x72: b"\r", 0x74: b"\t"}
        if c in simple:
            out += simple[c]
        elif c == 0x75:
            self.unicode_escape(out)
        else:
            raise self.error("invalid escape")

    def hex4(self):
        if len(self.s) - self.i < 4:
            self.i = len(self.s)
            raise self.error("EOF while parsing a string")
        digits = self.s[self.i:self.i + 4]
        self.i += 4
        try:
            if not all(d in b"0123456789abcdefABCDEF" for d in digits):
                raise ValueError
            return int(digits, 16)
        except ValueError:
            raise self.error("invalid escape") from None

    def unicode_escape(self, out):
        n = self.hex4()
        if 0xDC00 <= n <= 0xDFFF:
            raise self.error("lone leading surrogate in hex escape")
        if n < 0xD800 or n > 0xDBFF:
            out += chr(n).encode("utf-8")
            return
        if self.peek() is None:
            raise self.error("EOF while parsing a string")
        if self.peek() != 0x5C:
            self.i += 1
            raise self.error("unexpected end of hex escape")
        self.i += 1
        if self.peek() is None:
            raise self.error("EOF while parsing a string")
        if self.peek() != 0x75:
            self.i += 1
            raise self.error("unexpected end of hex escape")
        self.i += 1
        n2 = self.hex4()
        if n2 < 0xDC00 or n2 > 0xDFFF:
            raise self.error("lone leading surrogate in hex escape")
        cp = (((n - 0xD800) << 10) | (n2 - 0xDC00)) + 0x10000
        out += chr(cp).encode("utf-8")

    # Numbers (serde_json without `float_roundtrip`).

    def digit(self):
        c = self.peek()
        return c - 0x30 if c is not None and 0x30 <= c <= 0x39 else None

    def number(self, positive):
        if self.i >= len(self.s):
            raise self.error("EOF while parsing a value")
        c = self.s[self.i]
        self.i += 1
        if c == 0x30:
            if self.digit() is not None:
                raise self.peek_error("invalid number")
            return self.after_integer(positive, 0)
        if not 0x31 <= c <= 0x39:
            raise self.error("invalid number")
        sig = c - 0x30
        while True:
            d = self.digit()
            if d is None:
                return self.after_integer(positive, sig)
            if sig * 10 + d > U64_MAX:
                return self.long_integer(positive, sig)
            self.i += 1
            sig = sig * 10 + d

    def after_integer(self, positive, sig):
        c = self.peek()
        if c == 0x2E:
            return self.decimal(positive, sig, 0)
        if c in (0x65, 0x45):
            return self.exponent(positive, sig, 0)
        if positive:
            return sig
        if sig == 0 or sig > I64_MAX + 1:
            return -float(sig)
        return -sig

    def long_integer(self, positive, sig):
        exp = 0
        while True:
            c = self.peek()
            if c is not None and 0x30 <= c <= 0x39:
                self.i += 1
                exp += 1
            elif c == 0x2E:
                return self.decimal(positive, sig, exp)
            elif c in (0x65, 0x45):
                return self.exponent(positive, sig, exp)
            else:
                return self.from_parts(positive, sig, exp)

    def decimal(self, positive, sig, exp_before):
        self.i += 1
        after = 0
        while True:
            d = self.digit()
            if d is None:
                break
            if sig * 10 + d > U64_MAX:
                # Further digits are ignored (serde_json's parse_decimal_overflow).
                while self.digit() is not None:
                    self.i += 1
                c = self.peek()
                if c in (0x65, 0x45):
                    return self.exponent(positive, sig, exp_before + after)
                return self.from_parts(positive, sig, exp_before + after)
            self.i += 1
            sig = sig * 10 + d
            after -= 1
        if after == 0:
            if self.peek() is None:
                raise self.peek_error("EOF while parsing a value")
            raise self.peek_error("invalid number")
        c = self.peek()
        if c in (0x65, 0x45):
            return self.exponent(positive, sig, exp_before + after)
        return self.from_parts(positive, sig, exp_before + after)

    def exponent(self, positive, sig, starting):
        self.i += 1
        positive_exp = True
        c = self.peek()
        if c == 0x2B:
            self.i += 1
        elif c == 0x2D:
            self.i += 1
            positive_exp = False
        if self.i >= len(self.s):
            raise self.error("EOF while parsing a value")
        c = self.s[self.i]
        self.i += 1
        if not 0x30 <= c <= 0x39:
            raise self.error("invalid number")
        exp = c - 0x30
        while True:
            d = self.digit()
            if d is None:
                break
            self.i += 1
            if exp * 10 + d > 0x7FFFFFFF:
                # serde_json's parse_exponent_overflow
                while self.digit() is not None:
                    self.i += 1
                if sig != 0 and positive_exp:
                    raise self.error("number out of range")
                return 0.0 if positive else -0.0
            exp = exp * 10 + d
        final = starting + exp if positive_exp else starting - exp
        return self.from_parts(positive, sig, final)

    def from_parts(self, positive, sig, exponent):
        f = float(sig)
        while True:
            a = abs(exponent)
            if a < len(POW10):
                if exponent >= 0:
                    f *= POW10[a]
                    if f == float("inf"):
                        raise self.error("number out of range")
                else:
                    f /= POW10[a]
                break
            if f == 0.0:
                break
            if exponent >= 0:
                raise self.error("number out of range")
            f /= 1e308
            exponent += 308
        return f if positive else -f


def parse_json(data):
    p = _Parser(bytes(data))
    v = p.value()
    if p.ws() is not None:
        raise p.peek_error("trailing characters")
    return v


def _shortest(f):
    """(digits, sci): the shortest round-trip decimal digits of a positive finite float,
    without trailing zeros, and the decimal exponent of the first digit."""
    r = repr(f)  # shortest round-trip, e.g. '12.5', '1e+300', '1.5e-07'
    mantissa, _, e = r.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    sci = len(whole) - 1 + (int(e) if e else 0)
    stripped = digits.lstrip("0")
    sci -= len(digits) - len(stripped)
    return stripped.rstrip("0") or "0", sci


def format_float(f):
    """A finite float as serde_json writes it (zmij): shortest round-trip digits; plain
    notation for decimal exponents -5..=15 (`.0` added to integers), else `1.5e+16`."""
    if f == 0.0:
        return "-0.0" if str(f).startswith("-") else "0.0"
    sign = "-" if f < 0 else ""
    digits, sci = _shortest(abs(f))
    if -5 <= sci <= 15:
        if sci >= len(digits) - 1:
            return sign + digits + "0" * (sci - len(digits) + 1) + ".0"
        if sci >= 0:
            return sign + digits[: sci + 1] + "." + digits[sci + 1:]
        return sign + "0." + "0" * (-sci - 1) + digits
    m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return "%s%se%s%d" % (sign, m, "-" if sci < 0 else "+", abs(sci))


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(s):
    out = ['"']
    for ch in s:
        e = _ESCAPES.get(ch)
        if e is not None:
            out.append(e)
        elif ch < " ":
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _key_bytes(k):
    return k.encode("utf-8", "surrogatepass")


def dump(v, out):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif type(v) is int:
        out.append(str(v))
    elif type(v) is float:
        out.append(format_float(v))
    elif type(v) is str:
        out.append(quote(v))
    elif type(v) is list:
        out.append("[")
        for n, item in enumerate(v):
            if n:
                out.append(",")
            dump(item, out)
        out.append("]")
    else:
        out.append("{")
        for n, k in enumerate(sorted(v, key=_key_bytes)):
            if n:
                out.append(",")
            out.append(quote(k))
            out.append(":")
            dump(v[k], out)
        out.append("}")


def to_json(v):
    out = []
    dump(v, out)
    return "".join(out).encode("utf-8")


def describe(v):
    """A JSON value for a rejection reason: scalars as JSON (long strings cut, in Rust's
    `{:?}` form), containers by kind only."""
    if type(v) is list:
        return "an array"
    if type(v) is dict:
        return "an object"
    if type(v) is str and len(v) > 40:
        return rust_debug(v[:40]) + "\u2026"
    return to_json(v).decode("utf-8")


def rust_debug(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append("\\u{%x}" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# --- the order -----------------------------------------------------------------------------


class Reject(Exception):
    pass


def _required(doc, field):
    if field not in doc:
        raise Reject('invalid order: missing field "%s"' % field)
    return doc[field]


def _non_empty_string(doc, field):
    v = _required(doc, field)
    if type(v) is not str or v == "":
        raise Reject("invalid order: %s must be a non-empty string, got %s" % (field, describe(v)))


def _is_number(v):
    return type(v) in (int, float)


def parse_order(data):
    """The validated JSON object; raises Reject with the reason."""
    try:
        doc = parse_json(data)
    except JsonError as e:
        raise Reject(str(e)) from None
    if type(doc) is not dict:
        raise Reject("invalid order: expected a JSON object, got %s" % describe(doc))
    _non_empty_string(doc, "id")
    _non_empty_string(doc, "customer")
    amount = _required(doc, "amount")
    if not (_is_number(amount) and amount >= 0):
        raise Reject("invalid order: amount must be a non-negative number, got %s" % describe(amount))
    currency = _required(doc, "currency")
    if not (type(currency) is str and len(currency.encode("utf-8")) == 3
            and all("A" <= c <= "Z" for c in currency)):
        raise Reject(
            "invalid order: currency must be 3 uppercase letters (ISO 4217), got %s" % describe(currency))
    _non_empty_string(doc, "region")
    if "priority" in doc and doc["priority"] is not None and type(doc["priority"]) is not str:
        raise Reject("invalid order: priority must be a string, got %s" % describe(doc["priority"]))
    return doc


def amount_cents(amount):
    """amount × 100 rounded half away from zero on the amount's shortest decimal digits;
    None when it does not fit in an i64 or is negative."""
    if type(amount) is int:
        if amount < 0:
            return None
        c = amount * 100
        return c if c <= U64_MAX and c <= I64_MAX else None
    if not (0.0 <= amount < 9.0e16):
        return None
    text = _plain_decimal(amount)
    whole, _, fraction = text.partition(".")
    cents = int(whole) * 100
    digits = [int(d) for d in fraction]
    cents += (digits[0] * 10 if len(digits) > 0 else 0) + (digits[1] if len(digits) > 1 else 0)
    if len(digits) > 2 and digits[2] >= 5:
        cents += 1
    return cents


def _plain_decimal(f):
    """Rust's `f64::to_string` of a non-negative float: shortest round-trip digits, never
    an exponent."""
    if f == 0.0:
        return "0"
    digits, sci = _shortest(f)
    if sci < 0:
        return "0." + "0" * (-sci - 1) + digits
    if sci >= len(digits) - 1:
        return digits + "0" * (sci - len(digits) + 1)
    return digits[: sci + 1] + "." + digits[sci + 1:]


def _display_number(v):
    return str(v) if type(v) is int else format_float(v)


def enrich(doc, processed_by):
    """False: filter out (amount 0). Raises Reject when the amount is beyond cents."""
    amount = doc["amount"]
    if amount == 0:
        return False
    cents = amount_cents(amount)
    if cents is None:
        raise Reject("amount %s is too large to express in cents" % _display_number(amount))
    doc["amount_cents"] = cents
    doc["processed_by"] = processed_by
    return True


def topics(doc, topic_prefix):
    t = [topic_prefix + doc["region"]]
    if doc.get("priority") == HIGH_PRIORITY:
        t.append(topic_prefix + PRIORITY_TOPIC_SUFFIX)
    return t


def deserialize(data):
    """(key, payload); raises Reject."""
    doc = parse_order(data)
    return doc["id"], to_json(doc)


def transform(payload, processed_by):
    """None (filtered out) or (payload, region); raises Reject."""
    doc = parse_order(payload)
    if not enrich(doc, processed_by):
        return None
    return to_json(doc), doc["region"]


def route(payload, topic_prefix):
    return topics(parse_order(payload), topic_prefix)


def process(data, settings):
    """None (filtered out), or (key, payload, region, topics); raises StageReject."""
    try:
        doc = parse_order(data)
    except Reject as e:
        raise StageReject(DESERIALIZE, str(e)) from None
    try:
        if not enrich(doc, settings.processed_by):
            return None
    except Reject as e:
        raise StageReject(TRANSFORM, str(e)) from None
    t = topics(doc, settings.topic_prefix)
    return doc["id"], to_json(doc), doc["region"], t


class StageReject(Exception):
    def __init__(self, stage, reason):
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
