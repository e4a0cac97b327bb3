//! Request headers read one way: a single-valued header sent twice is refused (the gateway
//! would read the first, a backend may read the last or join them), a decided write's body
//! must come as the gateway reads it (no content coding; an npm document as UTF-8 JSON), and
//! header names that a CGI/WSGI backend would read as another header are dropped before
//! forwarding.

use http::header::{HeaderMap, HeaderName};

use crate::error::Refusal;

/// The one value of `name`, if sent; refuses a second one and a value that is not visible
/// ASCII.
pub fn single(headers: &HeaderMap, name: HeaderName) -> Result<Option<&str>, Refusal> {
    let mut values = headers.get_all(&name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::BadRequest(format!(
            "the request has more than one {name} header; send one (readers differ on which counts)"
        )));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| Refusal::BadRequest(format!("the {name} header is not visible ASCII")))
}

/// A decided write's body is read as sent: a `Content-Encoding` other than `identity` is
/// refused, since a backend (or a proxy before it) that decodes it would commit other bytes
/// than the gateway checked.
pub fn check_identity_coding(headers: &HeaderMap) -> Result<(), Refusal> {
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let identity = value
            .to_str()
            .is_ok_and(|v| v.split(',').all(|c| c.trim().eq_ignore_ascii_case("identity")));
        if !identity {
            return Err(Refusal::AmbiguousBody(
                "the gateway reads upload bodies as sent; send the body without a Content-Encoding".into(),
            ));
        }
    }
    Ok(())
}

/// An npm document is JSON in UTF-8: at most one `Content-Type`, and if sent,
/// `application/json` with no parameter but `charset=utf-8`. A backend's JSON body parser
/// decodes the charset a client declares (Verdaccio's body-parser honours any `utf-*`, UTF-7
/// included), so it would read other strings than the gateway. A document sent without a type
/// is UTF-8 to any parser that reads it as JSON at all (RFC 8259), as it is to the gateway.
pub fn check_json_utf8(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(value) = single(headers, http::header::CONTENT_TYPE)? else {
        return Ok(());
    };
    let mut params = value.split(';').map(|p| p.trim_matches([' ', '\t']));
    let media_type = params.next().unwrap_or("");
    let params_ok = params.all(|p| {
        p.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("charset") && v.trim_matches('"').eq_ignore_ascii_case("utf-8")
        })
    });
    if media_type.eq_ignore_ascii_case("application/json") && params_ok {
        Ok(())
    } else {
        Err(Refusal::AmbiguousBody(format!(
            "an npm package document must be sent as Content-Type: application/json (UTF-8), not {:?}",
            value.chars().take(60).collect::<String>()
        )))
    }
}

/// Names a CGI or WSGI backend (pypiserver, devpi, Warehouse behind a WSGI server) reads as
/// another header: they map `-` to `_`, so `Content_Length` and `Content-Length` both become
/// `CONTENT_LENGTH`, and which one wins is the server's choice. The gateway reads only the
/// `-` spellings, so it drops every name with `_` before forwarding, as nginx does by default
/// (`underscores_in_headers off`).
pub fn underscored(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_single_header_sent_twice_is_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(single(&headers, http::header::CONTENT_TYPE), Ok(None));
        headers.append(http::header::CONTENT_TYPE, HeaderValue::from_static("a/b"));
        assert_eq!(single(&headers, http::header::CONTENT_TYPE), Ok(Some("a/b")));
        headers.append(http::header::CONTENT_TYPE, HeaderValue::from_static("c/d"));
        assert!(matches!(
            single(&headers, http::header::CONTENT_TYPE),
            Err(Refusal::BadRequest(m)) if m.contains("more than one content-type")
        ));
    }

    #[test]
    fn bodies_are_read_as_sent() {
        let mut headers = HeaderMap::new();
        assert!(check_identity_coding(&headers).is_ok());
        headers.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("Identity"));
        assert!(check_identity_coding(&headers).is_ok());
        headers.append(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(matches!(
            check_identity_coding(&headers),
            Err(Refusal::AmbiguousBody(_))
        ));
        headers.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("identity, br"));
        assert!(check_identity_coding(&headers).is_err());
    }

    #[test]
    fn npm_documents_are_utf8_json() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(value));
            check_json_utf8(&headers)
        };
        for ok in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
        ] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for bad in [
            "application/json; charset=latin1",
            "application/json; charset=utf-16le",
            "text/plain",
            "application/json; x=y",
            "application/json-patch+json",
        ] {
            assert!(matches!(with(bad), Err(Refusal::AmbiguousBody(_))), "{bad}");
        }
        assert!(
            check_json_utf8(&HeaderMap::new()).is_ok(),
            "no type: read as UTF-8 JSON by everyone"
        );
    }

    #[test]
    fn underscored_names_are_found_once_each() {
        let mut headers = HeaderMap::new();
        headers.append("content_length", HeaderValue::from_static("1"));
        headers.append("transfer_encoding", HeaderValue::from_static("chunked"));
        headers.append("transfer_encoding", HeaderValue::from_static("x"));
        headers.append("content-length", HeaderValue::from_static("2"));
        let mut names: Vec<String> = underscored(&headers).iter().map(|n| n.to_string()).collect();
        names.sort();
        assert_eq!(names, ["content_length", "transfer_encoding"]);
    }
}
