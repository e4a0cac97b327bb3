#!/usr/bin/env python3
"""Parse multipart/form-data bodies with the Python readers that PyPI backends use.

usage: multipart_readers.py [--versions] < cases.jsonl > results.jsonl

Run it with the tools venv (tests/tools/install.sh), which holds every reader:

    python3 tests/tools/multipart_corpus.py \
      | ~/.cache/portcullis/tools/venv/bin/python tests/tools/multipart_readers.py

Input: one JSON object a line, {"id": str, "content_type": str, "body_b64": str}
(other keys, such as "note", are ignored). Output: one JSON line per case,

    {"id": ..., "readers": {READER: {"ok": true, "parts": [PART, ...]}
                                  | {"ok": false, "error": "short text"}}}
    PART = {"name": str|null, "filename": str|null, "sha256": hex, "len": int}

--versions prints {READER: "what it runs"} instead and exits.

Readers, each called through the API its backend calls, on a WSGI environ made from the
case (POST, CONTENT_TYPE, CONTENT_LENGTH = len(body), wsgi.input):

  pypiserver  bottle 0.12.25 as vendored in pypiserver 2.4.2
              (pypiserver/bottle_wrapper/bottle.py). _app.py's update()/file_upload() read
              request.forms and request.files, the non-file and FileUpload items of
              BaseRequest.POST, which wraps cgi.FieldStorage. Order: POST.allitems(),
              i.e. grouped by field name in first-seen order, parse order within a name.
              File bytes: FileUpload.file; filename: FileUpload.raw_filename (what
              pypiserver stores under).
  cgi         cgi.FieldStorage(fp, environ, keep_blank_values=True) of the stdlib;
              order: FieldStorage.list (parse order).
  email       email.parser.BytesParser(policy=email.policy.HTTP) on "Content-Type: ..."
              plus the body; msg.iter_parts() (parse order); name from
              get_param("name", header="content-disposition"), get_filename(), bytes from
              get_payload(decode=True), which undoes Content-Transfer-Encoding base64,
              quoted-printable and uuencode. A body that is not multipart gives no parts.
  multipart   multipart.parse_form_data(environ) (defnull's multipart, non-strict, errors
              suppressed as by default); order: forms.iterallitems() then
              files.iterallitems(), each grouped by name in first-seen order.
  webob       webob.Request(environ).POST, which devpi-server's submit() and Pyramid read:
              WebOb 1.8.x wraps cgi.FieldStorage (webob.compat.cgi_FieldStorage) and then
              MultiDict.from_fieldstorage, which decodes base64/quoted-printable
              Content-Transfer-Encoding and a part charset for non-file fields. Order:
              POST.items() (parse order). File bytes: FieldStorage.file.
  werkzeug    werkzeug.formparser.parse_form_data(environ) (silent, as Flask);
              order: form.items(multi=True) then files.items(multi=True), each grouped
              by name in first-seen order. File bytes: FileStorage.stream.

What is hashed is what the application gets: the bytes of a file value, or for a text
value the UTF-8 encoding of the str the reader returns (so charset and transfer-encoding
decoding show up as different hashes). Names and filenames are the reader's str; where
a reader carries raw bytes as surrogate escapes (email), they are turned back into
bytes and shown as UTF-8 text, with any undecodable byte written as \\xNN.

A part whose value is itself a multipart container (cgi-based readers recurse into a
part with Content-Type multipart/*; email too) has "sha256"/"len" of the empty value the
application can read, plus "nested": [PART, ...] (or null where the reader's API does
not expose the children).

Each reader runs under its own try/except and a SIGALRM time limit of TIMEOUT_S seconds.
"""
import base64
import email.parser
import email.policy
import email.utils
import hashlib
import io
import json
import signal
import sys
import warnings

TIMEOUT_S = 20
ERROR_MAX = 200


# ---------------------------------------------------------------------------
# value normalisation
def _to_bytes(value):
    """Bytes as the application holds them; a str as UTF-8 (surrogate escapes undone)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _text(value):
    if value is None:
        return None
    return _to_bytes(value).decode("utf-8", "backslashreplace")


def _part(name, filename, data, nested=False, children=None):
    out = {
        "name": _text(name),
        "filename": _text(filename),
        "sha256": hashlib.sha256(data).hexdigest(),
        "len": len(data),
    }
    if nested:
        out["nested"] = children
    return out


def _read_file(fileobj):
    fileobj.seek(0)
    return _to_bytes(fileobj.read())


def wsgi_environ(content_type, body):
    return {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


# ---------------------------------------------------------------------------
# cgi.FieldStorage and the readers built on it
def _import_cgi():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import cgi
    return cgi


def _fieldstorage_part(item):
    """One cgi.FieldStorage / MiniFieldStorage item as a PART."""
    value = item.value
    if isinstance(value, list):
        children = [_fieldstorage_part(child) for child in value]
        return _part(item.name, item.filename, b"", nested=True, children=children)
    return _part(item.name, item.filename, _to_bytes(value))


def read_cgi(content_type, body):
    cgi = _import_cgi()
    env = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "QUERY_STRING": "",
    }
    fs = cgi.FieldStorage(fp=io.BytesIO(body), environ=env, keep_blank_values=True)
    return [_fieldstorage_part(item) for item in fs.list or ()]


def read_pypiserver(content_type, body):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pypiserver.bottle_wrapper import bottle
    request = bottle.BaseRequest(wsgi_environ(content_type, body))
    parts = []
    for name, value in request.POST.allitems():
        if isinstance(value, bottle.FileUpload):
            if value.file is None:  # cgi recursed into a multipart/* part
                parts.append(_part(name, value.raw_filename, b"", nested=True))
            else:
                parts.append(_part(name, value.raw_filename, _read_file(value.file)))
        elif isinstance(value, list):
            children = [_fieldstorage_part(child) for child in value]
            parts.append(_part(name, None, b"", nested=True, children=children))
        else:
            parts.append(_part(name, None, _to_bytes(value)))
    return parts


def _webob_part(name, value):
    if isinstance(value, list):
        children = [_fieldstorage_part(child) for child in value]
        return _part(name, None, b"", nested=True, children=children)
    if isinstance(value, (str, bytes)):
        return _part(name, None, _to_bytes(value))
    if value.file is None:  # a FieldStorage holding a nested multipart
        children = [_fieldstorage_part(child) for child in value.list or ()]
        return _part(name, value.filename, b"", nested=True, children=children)
    return _part(name, value.filename, _read_file(value.file))


def read_webob(content_type, body):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import webob
    post = webob.Request(wsgi_environ(content_type, body)).POST
    return [_webob_part(name, value) for name, value in post.items()]


# ---------------------------------------------------------------------------
# the others
def _email_part(msg):
    name = msg.get_param("name", header="content-disposition")
    if isinstance(name, tuple):  # an RFC 2231 name*= parameter, as get_filename() does
        name = email.utils.collapse_rfc2231_value(name)
    filename = msg.get_filename()
    if msg.is_multipart():
        children = [_email_part(child) for child in msg.iter_parts()]
        return _part(name, filename, b"", nested=True, children=children)
    return _part(name, filename, msg.get_payload(decode=True) or b"")


def read_email(content_type, body):
    raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [_email_part(part) for part in msg.iter_parts()]


def read_multipart(content_type, body):
    import multipart

    forms, files = multipart.parse_form_data(wsgi_environ(content_type, body))
    parts = [_part(name, None, _to_bytes(value)) for name, value in forms.iterallitems()]
    parts += [_part(name, f.filename, f.raw) for name, f in files.iterallitems()]
    return parts


def read_werkzeug(content_type, body):
    from werkzeug.formparser import parse_form_data

    _stream, form, files = parse_form_data(wsgi_environ(content_type, body))
    parts = [_part(name, None, _to_bytes(value)) for name, value in form.items(multi=True)]
    parts += [
        _part(name, f.filename, _read_file(f.stream)) for name, f in files.items(multi=True)
    ]
    return parts


READERS = {
    "pypiserver": read_pypiserver,
    "cgi": read_cgi,
    "email": read_email,
    "multipart": read_multipart,
    "webob": read_webob,
    "werkzeug": read_werkzeug,
}


# ---------------------------------------------------------------------------
def versions():
    from importlib import metadata

    def dist(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    py = sys.version.split()[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from pypiserver.bottle_wrapper import bottle
        vendored = f"bottle {bottle.__version__} vendored"
    except ImportError:
        vendored = "bottle not importable"
    return {
        "pypiserver": f"pypiserver {dist('pypiserver')} ({vendored}, cgi of Python {py})",
        "cgi": f"cgi of Python {py}",
        "email": f"email of Python {py}",
        "multipart": f"multipart {dist('multipart')}",
        "webob": f"WebOb {dist('WebOb')} (cgi of Python {py})",
        "werkzeug": f"Werkzeug {dist('Werkzeug')}",
    }


class _Timeout(Exception):
    pass


def _on_alarm(_signum, _frame):
    raise _Timeout(f"timed out after {TIMEOUT_S} s")


def run_reader(reader, content_type, body):
    signal.alarm(TIMEOUT_S)
    try:
        return {"ok": True, "parts": reader(content_type, body)}
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:ERROR_MAX]}
    finally:
        signal.alarm(0)


def run_case(case):
    body = base64.b64decode(case["body_b64"])
    results = {
        name: run_reader(reader, case["content_type"], body) for name, reader in READERS.items()
    }
    return {"id": case["id"], "readers": results}


def main(argv):
    if argv == ["--versions"]:
        print(json.dumps(versions(), indent=1))
        return 0
    if argv:
        print(__doc__.split("\n\n", 2)[1], file=sys.stderr)
        return 2
    signal.signal(signal.SIGALRM, _on_alarm)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run_case(json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
