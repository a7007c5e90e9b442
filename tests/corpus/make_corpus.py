#!/usr/bin/env python3
# Regenerates tests/corpus/lines/: one hostile NDJSON line per file, named `<expected>--<case>.line`,
# where <expected> is `accept`, `skip` (blank after the engine strips one trailing \r), `any` (no
# expectation beyond "no panic, and the binary agrees with the library") or a reject code.
# Run from tests/corpus/: python3 make_corpus.py
import os, re
D = 'lines'
for f in os.listdir(D): os.remove(os.path.join(D, f))
T = b'1714521600'
def ev(extra=b'', u=b'"a@x.com"', t=T, e=b'"open"'):
    parts = []
    if u is not None: parts.append(b'"u":' + u)
    if t is not None: parts.append(b'"t":' + t)
    if e is not None: parts.append(b'"e":' + e)
    if extra: parts.append(extra)
    return b'{' + b','.join(parts) + b'}'
cases = []
def c(expect, name, data): cases.append((expect, name, data))
# ---- accepted
c('accept', 'minimal', ev())
c('accept', 'all-fields', ev(b'"id":"e-1","b":"firefox","m":"m-1"', u=b'"b@Y.COM"'))
c('accept', 'crlf', ev() + b'\r')
c('accept', 'surrounding-whitespace', b'  \t' + ev() + b' \t ')
c('accept', 'whitespace-inside', b'{ "u" : "a@x.com" ,\t"t" : 1714521600 , "e" : "open" }')
c('accept', 'integer-id', ev(b'"id":123'))
c('accept', 'negative-integer-id', ev(b'"id":-9223372036854775808'))
c('accept', 'u64-max-id', ev(b'"id":18446744073709551615'))
c('accept', 'null-id', ev(b'"id":null'))
c('accept', 'time-ms', ev(t=b'1714521600123'))
c('accept', 'time-fraction', ev(t=b'1714521600.5'))
c('accept', 'time-exponent', ev(t=b'1.7145216e9'))
c('accept', 'time-rfc3339-offset', ev(t=b'"2024-05-01T05:00:00.250+02:00"'))
c('accept', 'time-rfc3339-space-lower-z', ev(t=b'"2024-05-01 03:00:00z"'))
c('accept', 'time-rfc3339-nanos', ev(t=b'"2024-05-01T03:00:00.123456789Z"'))
c('accept', 'time-leap-second', ev(t=b'"2016-12-31T23:59:60Z"'))
c('accept', 'time-digit-string', ev(t=b'"1714521600"'))
c('accept', 'time-epoch-zero', ev(t=b'0'))
c('accept', 'time-last-ms-before-2100', ev(t=b'4102444799999'))
c('accept', 'escaped-user', ev(u=b'"caf\\u00e9@x.org"'))
c('accept', 'escaped-quote-backslash-user', ev(u=b'"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"'))
c('accept', 'user-nul-escape', ev(u=b'"\\u0000"'))
c('accept', 'user-surrogate-pair', ev(u=b'"\\ud83d\\ude00@x.org"'))
c('accept', 'user-raw-utf8', ev(u='"ユーザー@例え.jp"'.encode()))
c('accept', 'unicode-event-type', ev(e='"öffnen"'.encode()))
c('accept', 'dimension-null', ev(b'"b":null,"m":null'))
c('accept', 'dimension-empty', ev(b'"b":"","m":""'))
c('accept', 'email-no-at', ev(u=b'"nobody"'))
c('accept', 'email-trailing-at', ev(u=b'"nobody@"'))
c('accept', 'email-many-at', ev(u=b'"a@b@EXAMPLE.org"'))
c('accept', 'lookup-miss', ev(b'"m":"no-such-message"'))
c('accept', 'extra-nested-fields', ev(b'"ctx":{"a":[1,{"b":null}],"c":1e300,"d":-0.0,"e":"\\u0000"}'))
c('accept', 'deep-nesting-extra-field', ev(b'"x":' + b'[' * 500 + b']' * 500))
c('accept', 'deep-object-extra-field', ev(b'"x":' + b'{"k":' * 300 + b'1' + b'}' * 300))
c('accept', 'fields-in-other-order', b'{"e":"open","b":"x","t":1714521600,"u":"z@x.com"}')
c('accept', 'field-names-escaped', b'{"\\u0075":"a@x.com","t":1714521600,"e":"open"}')
# ---- skipped (blank after the engine strips one trailing \r)
c('skip', 'empty', b'')
c('skip', 'spaces-and-tabs', b'   \t  \t')
c('skip', 'cr-only', b'\r')
c('skip', 'form-feed', b' \x0c ')
# ---- invalid json
c('invalid_json', 'truncated-object', b'{"u":"a@x.com","t":')
c('invalid_json', 'bare-word', b'hello world')
c('invalid_json', 'single-quotes', b"{'u':'a','t':1714521600,'e':'open'}")
c('invalid_json', 'trailing-comma', ev() [:-1] + b',}')
c('invalid_json', 'trailing-garbage', ev() + b' trailing')
c('invalid_json', 'two-objects', ev() + ev())
c('invalid_json', 'unterminated-string', b'{"u":"a@x.com,"t":1714521600,"e":"open"}')
c('invalid_json', 'nan', ev(t=b'NaN'))
c('invalid_json', 'infinity', ev(t=b'Infinity'))
c('invalid_json', 'raw-control-char-in-string', ev(u=b'"a\x01b"'))
c('invalid_json', 'raw-nul-in-string', ev(u=b'"a\x00b"'))
c('invalid_json', 'nul-bytes', b'\x00\x00\x00\x00')
c('invalid_json', 'ascii-control-junk', b'\x01\x02\x03\x04\x1b[31m')
c('invalid_json', 'lone-open-brace', b'{')
c('invalid_json', 'lone-close-brace', b'}')
c('invalid_json', 'comment', b'// {"u":"a"}')
c('invalid_json', 'missing-comma', b'{"u":"a" "t":1714521600,"e":"open"}')
c('invalid_json', 'bad-escape', ev(u=b'"a\\xb"'))
c('invalid_json', 'short-unicode-escape', ev(u=b'"\\u12"'))
c('invalid_json', 'high-surrogate-then-non-low', ev(u=b'"\\ud800\\u0041"'))
c('invalid_json', 'lone-low-surrogate', ev(u=b'"\\udc00"'))
c('invalid_json', 'unclosed-deep-array', ev(b'"x":' + b'[' * 2000))
c('invalid_json', 'key-without-value', b'{"u":}')
c('invalid_json', 'plus-sign-number', ev(t=b'+1714521600'))
c('invalid_json', 'hex-number', ev(t=b'0x66'))
c('invalid_json', 'bare-minus', ev(t=b'-'))
c('invalid_json', 'dot-number', ev(t=b'.5'))
# ---- not an object
for name, data in [('array', b'[1,2,3]'), ('array-of-objects', b'[' + ev() + b']'), ('number', b'42'),
                   ('negative-float', b'-1.5e3'), ('string', b'"just a string"'), ('true', b'true'),
                   ('false', b'false'), ('null', b'null'), ('empty-array', b'[]')]:
    c('not_an_object', name, data)
# ---- user
c('missing_user', 'absent', ev(u=None))
c('missing_user', 'null', ev(u=b'null'))
c('missing_user', 'empty', ev(u=b'""'))
c('missing_user', 'empty-object', b'{}')
for name, v in [('number', b'5'), ('float', b'1.5'), ('bool', b'true'), ('array', b'["a"]'), ('object', b'{"a":1}')]:
    c('wrong_type', 'user-' + name, ev(u=v))
# ---- time
c('missing_time', 'absent', ev(t=None))
c('missing_time', 'null', ev(t=b'null'))
for name, v in [('word', b'"yesterday"'), ('bool', b'true'), ('object', b'{}'), ('array', b'[1714521600]'),
                ('feb-30', b'"2024-02-30T00:00:00Z"'), ('no-offset', b'"2024-05-01T00:00:00"'),
                ('hour-25', b'"2024-05-01T25:00:00Z"'), ('ten-fraction-digits', b'"2024-05-01T00:00:00.1234567890Z"'),
                ('empty-string', b'""'), ('minus-string', b'"-"'), ('exponent-string', b'"1e10"'),
                ('nineteen-digit-string', b'"9999999999999999999"'), ('float-too-big', b'1e300'),
                ('offset-without-colon', b'"2024-05-01T00:00:00+0200"'), ('date-only', b'"2024-05-01"')]:
    c('invalid_time', name, ev(t=v))
for name, v in [('minus-one', b'-1'), ('just-before-1970', b'"1969-12-31T23:59:59.999Z"'),
                ('2100-seconds', b'4102444800'), ('2100-ms', b'4102444800000'), ('2100-string', b'"2100-01-01T00:00:00Z"'),
                ('2100-via-offset', b'"2099-12-31T23:00:00-02:00"'), ('i64-min', b'-9223372036854775808'),
                ('i64-max', b'9223372036854775807'), ('seconds-just-under-1e11', b'99999999999'),
                ('year-9999', b'"9999-12-31T23:59:59Z"'), ('year-0000', b'"0000-01-01T00:00:00Z"'),
                ('float-1e15', b'1e15'), ('negative-digit-string', b'"-1"')]:
    c('time_out_of_range', name, ev(t=v))
# ---- event type
c('missing_event_type', 'absent', ev(e=None))
c('missing_event_type', 'null', ev(e=b'null'))
c('missing_event_type', 'empty', ev(e=b'""'))
c('wrong_type', 'event-type-number', ev(e=b'7'))
c('wrong_type', 'event-type-array', ev(e=b'["open"]'))
# ---- event id
for name, v in [('float', b'1.5'), ('array', b'[1]'), ('object', b'{"id":1}'), ('bool', b'false')]:
    c('wrong_type', 'id-' + name, ev(b'"id":' + v))
# ---- dimensions
for name, v in [('number', b'"b":3'), ('bool', b'"b":true'), ('array', b'"b":["x"]'), ('object', b'"b":{"x":1}'),
                ('lookup-number', b'"m":1'), ('lookup-array', b'"m":["m-1"]')]:
    c('wrong_type', 'dimension-' + name, ev(v))
# ---- invalid utf-8
for name, v in [('ff-in-string', ev(u=b'"\xff@x.com"')), ('bad-continuation', b'\xc3\x28'),
                ('overlong-slash', ev(u=b'"\xc0\xaf"')), ('encoded-surrogate', ev(u=b'"\xed\xa0\x80"')),
                ('truncated-multibyte-at-end', ev() + b'\xe2\x82'), ('latin1', ev(u=b'"caf\xe9"')),
                ('binary-junk', b'\x89PNG\r\n'.replace(b'\n', b'') + b'\x1a\xfe\xff\x80\x81garbage'),
                ('too-big-codepoint', ev(u=b'"\xf4\x90\x80\x80"'))]:
    c('invalid_utf8', name, v)
# ---- line too long (corpus config: max_line_bytes = 4096)
c('line_too_long', 'valid-event-4097-bytes', None)
c('line_too_long', 'binary-5000-bytes', bytes((i * 37 + 11) % 256 for i in range(5000)).replace(b'\n', b'.').replace(b'\r', b'.'))
# ---- the documented check order: length, UTF-8, JSON, object, user, time, event type, event id, dimensions
c('invalid_utf8', 'order-utf8-before-json', b'{"u":"\xff')
c('invalid_utf8', 'order-utf8-before-object', b'["\xff"]')
c('not_an_object', 'order-object-before-user', b'[{"t":"x"}]')
c('missing_user', 'order-user-before-time', b'{"t":"bad","e":5}')
c('wrong_type', 'order-user-type-before-time', b'{"u":5,"t":"bad"}')
c('invalid_time', 'order-time-before-event-type', b'{"u":"a","t":"bad"}')
c('missing_event_type', 'order-event-type-before-id', b'{"u":"a","t":1714521600,"id":[1],"b":5}')
c('wrong_type', 'order-id-before-dimensions', ev(b'"id":[1],"b":5'))
# ---- anything goes, as long as nothing panics and the binary agrees with the library
c('any', 'utf8-bom', b'\xef\xbb\xbf' + ev())
c('any', 'duplicate-key', b'{"u":5,"u":"a@x.com","t":1714521600,"e":"open"}')
c('any', 'lone-high-surrogate', ev(u=b'"\\ud800"'))
c('any', 'time-1e400', ev(t=b'1e400'))
c('any', 'time-huge-integer', ev(t=b'123456789012345678901234567890'))
c('any', 'vertical-tab-only', b'\x0b')
c('any', 'id-integral-float', ev(b'"id":1.0'))
c('any', 'leading-zero-number', ev(t=b'01714521600'))
c('any', 'minus-zero-time', ev(t=b'-0'))
c('any', 'deep-array-line', b'[' * 2000 + b']' * 2000)

# fill the 4097-byte event
for i, (ex, name, data) in enumerate(cases):
    if data is None:
        base = ev(b'"pad":""')
        need = 4097 - len(base)
        data = ev(b'"pad":"' + b'p' * need + b'"')
        assert len(data) == 4097, len(data)
        cases[i] = (ex, name, data)
seen = set()
for ex, name, data in cases:
    assert b'\n' not in data, name
    fn = f'{ex}--{name}.line'
    assert fn not in seen, fn
    seen.add(fn)
    open(os.path.join(D, fn), 'wb').write(data)
print(len(cases))
