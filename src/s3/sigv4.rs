//! AWS Signature Version 4 header signing (the `Authorization` header), as S3 wants it.
//!
//! Pure functions over strings, independent of the HTTP library, so they can be checked
//! against AWS's published test vectors. S3 differs from the generic SigV4 rules in one way
//! that matters here: the path is **not** normalized (`//`, `.` and `..` segments are part
//! of the key) and is URI-encoded exactly once.

use std::fmt::Write as _;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::time::amz_date;

/// `x-amz-content-sha256` value for a body that is not hashed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Hex SHA-256 of the empty string.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Who signs, for which region/service, and when. `Debug` is deliberately not derived.
pub struct SigningParams<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

/// The parts of a request that go into the signature besides its headers.
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path as the key spells it, not yet percent-encoded (`/bucket/a b/c`).
    /// It is encoded once by [`uri_encode_path`], never normalized.
    pub path: &'a str,
    /// Query parameters, not yet encoded. An empty value means `name=`.
    pub query: &'a [(String, String)],
    /// Hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`].
    pub payload_hash: &'a str,
    /// Add `x-amz-content-sha256: <payload_hash>` (S3 requires it; the generic suite omits it).
    pub content_sha256_header: bool,
}

/// Everything computed while signing. Holds the signature: never log it.
pub struct SigningOutput {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
    /// The `Authorization` header value (also appended to the headers).
    pub authorization: String,
}

/// True for the bytes SigV4 never percent-encodes.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn uri_encode_into(out: &mut String, input: &str, keep_slash: bool) {
    for &b in input.as_bytes() {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Percent-encodes every byte except `A-Za-z0-9-_.~` (so `/` becomes `%2F`).
pub fn uri_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    uri_encode_into(&mut out, input, false);
    out
}

/// Percent-encodes a path the S3 way: every byte except unreserved ones and `/`.
/// No normalization: `a//b/./c/..` stays as it is.
pub fn uri_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    uri_encode_into(&mut out, path, true);
    out
}

/// Encoded `(name, value)` pairs in canonical (byte-wise sorted) order.
fn sorted_encoded_query(query: &[(String, String)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    pairs
}

/// The canonical query string: `a=1&b=&c=x%2Fy`, sorted by name then value.
pub fn canonical_query_string(query: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in sorted_encoded_query(query).iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The query string to send: the canonical one, except that a parameter with an empty
/// value is sent bare (`?uploads`, not `?uploads=`), as S3's own clients do. A server
/// reads both the same way, so the signature still matches.
pub fn wire_query_string(query: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in sorted_encoded_query(query).iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        if !v.is_empty() {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// Trims a header value and squeezes runs of spaces/tabs into one space.
fn trim_all(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split([' ', '\t']).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `(canonical headers block, signed header list)` of a header list.
/// Names are lower-cased; repeated names are joined with `,` in order of appearance.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = trim_all(value);
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => merged.push((name, value)),
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let mut block = String::new();
    let mut signed = String::new();
    for (i, (name, value)) in merged.iter().enumerate() {
        block.push_str(name);
        block.push(':');
        block.push_str(value);
        block.push('\n');
        if i > 0 {
            signed.push(';');
        }
        signed.push_str(name);
    }
    (block, signed)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Hex SHA-256 of a byte string (the payload hash).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Derives the signing key `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
pub fn derive_signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

struct CachedKey {
    /// SHA-256 of the secret, so a rotated secret under the same key id is noticed
    /// without keeping another copy of the secret.
    secret_digest: [u8; 32],
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    key: [u8; 32],
}

/// Remembers the last derived signing key; it changes once a day (or when keys rotate).
#[derive(Default)]
pub struct SigningKeyCache {
    last: Mutex<Option<CachedKey>>,
}

impl std::fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeyCache { .. }")
    }
}

impl SigningKeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&self, params: &SigningParams<'_>, date: &str) -> [u8; 32] {
        let digest: [u8; 32] = Sha256::digest(params.secret_access_key.as_bytes()).into();
        let mut last = self.last.lock();
        if let Some(c) = last.as_ref() {
            if c.secret_digest == digest
                && c.access_key_id == params.access_key_id
                && c.date == date
                && c.region == params.region
                && c.service == params.service
            {
                return c.key;
            }
        }
        let key = derive_signing_key(
            params.secret_access_key,
            date,
            params.region,
            params.service,
        );
        *last = Some(CachedKey {
            secret_digest: digest,
            access_key_id: params.access_key_id.to_owned(),
            date: date.to_owned(),
            region: params.region.to_owned(),
            service: params.service.to_owned(),
            key,
        });
        key
    }
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value.to_owned()));
}

/// Signs a request. `headers` must already hold every header to be signed, `host`
/// included (and nothing that will not be sent as is). This sets `x-amz-date`,
/// optionally `x-amz-content-sha256`, `x-amz-security-token` when there is a session
/// token, then appends `authorization`.
pub fn sign(
    params: &SigningParams<'_>,
    req: &SignableRequest<'_>,
    headers: &mut Vec<(String, String)>,
    cache: Option<&SigningKeyCache>,
) -> SigningOutput {
    let (stamp, date) = amz_date(params.time);
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
    set_header(headers, "x-amz-date", &stamp);
    if req.content_sha256_header {
        set_header(headers, "x-amz-content-sha256", req.payload_hash);
    }
    if let Some(token) = params.session_token {
        set_header(headers, "x-amz-security-token", token);
    }

    let (header_block, signed_headers) = canonical_headers(headers);
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode_path(req.path),
        canonical_query_string(req.query),
        header_block,
        signed_headers,
        req.payload_hash
    );
    let scope = format!("{date}/{}/{}/aws4_request", params.region, params.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{stamp}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = match cache {
        Some(c) => c.key(params, &date),
        None => derive_signing_key(
            params.secret_access_key,
            &date,
            params.region,
            params.service,
        ),
    };
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        params.access_key_id
    );
    headers.push(("authorization".to_owned(), authorization.clone()));
    SigningOutput {
        canonical_request,
        string_to_sign,
        signature,
        authorization,
    }
}

#[cfg(test)]
mod tests {
    //! Expected values are copied from AWS's published SigV4 test suite
    //! (aws-sig-v4-test-suite, 2015-08-30 vectors) and from the S3 API reference page
    //! "Signature Calculations for the Authorization Header: Transferring Payload in a
    //! Single Chunk". Nothing here is computed by this code and pasted back.
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const SUITE_KEY_ID: &str = "AKIDEXAMPLE";
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 20150830T123600Z
    const SUITE_TIME: u64 = 1_440_938_160;
    const SUITE_HOST: &str = "example.amazonaws.com";
    const STS_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    struct Case<'a> {
        method: &'a str,
        path: &'a str,
        query: &'a [(&'a str, &'a str)],
        /// Headers besides host and x-amz-date.
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
        token: Option<&'a str>,
    }

    fn suite_sign(c: &Case<'_>) -> SigningOutput {
        let params = SigningParams {
            access_key_id: SUITE_KEY_ID,
            secret_access_key: SUITE_SECRET,
            session_token: c.token,
            region: "us-east-1",
            service: "service",
            time: UNIX_EPOCH + Duration::from_secs(SUITE_TIME),
        };
        let query: Vec<(String, String)> = c
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut headers = vec![("Host".to_owned(), SUITE_HOST.to_owned())];
        headers.extend(
            c.headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let hash = sha256_hex(c.body);
        let req = SignableRequest {
            method: c.method,
            path: c.path,
            query: &query,
            payload_hash: &hash,
            content_sha256_header: false,
        };
        let out = sign(&params, &req, &mut headers, None);
        assert_eq!(
            headers.last().map(|(n, v)| (n.as_str(), v.as_str())),
            Some(("authorization", out.authorization.as_str()))
        );
        out
    }

    fn simple(method: &'static str, path: &'static str) -> Case<'static> {
        Case {
            method,
            path,
            query: &[],
            headers: &[],
            body: b"",
            token: None,
        }
    }

    fn check(out: &SigningOutput, creq: &str, sts: &str, authz: &str) {
        assert_eq!(out.canonical_request, creq);
        assert_eq!(out.string_to_sign, sts);
        assert_eq!(out.authorization, authz);
    }

    #[test]
    fn get_vanilla() {
        let out = suite_sign(&simple("GET", "/"));
        check(
            &out,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let mut c = simple("GET", "/");
        c.query = &[("Param2", "value2"), ("Param1", "value1")];
        check(
            &suite_sign(&c),
            "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
    }

    #[test]
    fn get_vanilla_query_unreserved() {
        let u = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let q = [(u, u)];
        let mut c = simple("GET", "/");
        c.query = &q;
        check(
            &suite_sign(&c),
            "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        );
    }

    #[test]
    fn get_unreserved() {
        let out = suite_sign(&simple(
            "GET",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        ));
        check(
            &out,
            "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        );
    }

    #[test]
    fn get_utf8() {
        let out = suite_sign(&simple("GET", "/\u{1234}"));
        check(
            &out,
            "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        );
    }

    #[test]
    fn get_vanilla_utf8_query() {
        let mut c = simple("GET", "/");
        c.query = &[("\u{1234}", "bar")];
        check(
            &suite_sign(&c),
            "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\neb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        );
    }

    #[test]
    fn get_space() {
        // From the suite's normalize-path folder; no dot segments, so S3 agrees.
        let out = suite_sign(&simple("GET", "/example space/"));
        check(
            &out,
            "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        // The suite's .creq for this case lists content-length, but its .sts and .authz were
        // computed without it (the published files disagree). The .sts/.authz pair is
        // self-consistent, so that is what is checked: content-type;host;x-amz-date.
        let c = Case {
            method: "POST",
            path: "/",
            query: &[],
            headers: &[("Content-Type", "application/x-www-form-urlencoded")],
            body: b"Param1=value1",
            token: None,
        };
        let out = suite_sign(&c);
        assert_eq!(
            out.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        assert_eq!(
            out.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
        assert!(out
            .canonical_request
            .ends_with("\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"));
    }

    #[test]
    fn get_header_value_trim() {
        let c = Case {
            headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            ..simple("GET", "/")
        };
        check(
            &suite_sign(&c),
            "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\na726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        );
    }

    #[test]
    fn get_header_key_duplicate() {
        let c = Case {
            headers: &[
                ("My-Header1", "value2"),
                ("My-Header1", "value2"),
                ("My-Header1", "value1"),
            ],
            ..simple("GET", "/")
        };
        check(
            &suite_sign(&c),
            "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\ndc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        );
    }

    #[test]
    fn post_vanilla_and_query() {
        check(
            &suite_sign(&simple("POST", "/")),
            "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        );
        let mut c = simple("POST", "/");
        c.query = &[("Param1", "value1")];
        check(
            &suite_sign(&c),
            "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        );
    }

    #[test]
    fn post_sts_header_before() {
        let c = Case {
            token: Some(STS_TOKEN),
            ..simple("POST", "/")
        };
        let out = suite_sign(&c);
        check(
            &out,
            &format!("POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{STS_TOKEN}\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        );
    }

    #[test]
    fn s3_does_not_normalize_paths() {
        // The generic suite's normalize-path cases expect `/example1/example2/../..` → `/`,
        // `//example//` → `/example/`, `/./example` → `/example`. S3 must not do that:
        // those dots and slashes are part of the object key.
        for (path, want) in [
            ("/example1/example2/../..", "/example1/example2/../.."),
            ("//example//", "//example//"),
            ("/./example", "/./example"),
            ("/./", "/./"),
        ] {
            let out = suite_sign(&simple("GET", path));
            assert_eq!(out.canonical_request.lines().nth(1), Some(want));
        }
    }

    const S3_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 20130524T000000Z
    const S3_TIME: u64 = 1_369_353_600;

    fn s3_sign(
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        payload_hash: &str,
    ) -> SigningOutput {
        let params = SigningParams {
            access_key_id: S3_KEY_ID,
            secret_access_key: S3_SECRET,
            session_token: None,
            region: "us-east-1",
            service: "s3",
            time: UNIX_EPOCH + Duration::from_secs(S3_TIME),
        };
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut headers = vec![(
            "host".to_owned(),
            "examplebucket.s3.amazonaws.com".to_owned(),
        )];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let req = SignableRequest {
            method,
            path,
            query: &query,
            payload_hash,
            content_sha256_header: true,
        };
        let cache = SigningKeyCache::new();
        let out = sign(&params, &req, &mut headers, Some(&cache));
        // A second signing through the warm cache gives the same answer.
        let again = sign(&params, &req, &mut headers, Some(&cache));
        assert_eq!(again.signature, out.signature);
        out
    }

    /// S3's examples print the header as `Credential=…,SignedHeaders=…,Signature=…`.
    fn compact(authz: &str) -> String {
        authz.replace(", ", ",")
    }

    #[test]
    fn s3_example_get_object_range() {
        let out = s3_sign(
            "GET",
            "/test.txt",
            &[],
            &[("Range", "bytes=0-9")],
            EMPTY_PAYLOAD_SHA256,
        );
        assert_eq!(
            out.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            out.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            out.signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            compact(&out.authorization),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn s3_example_put_object() {
        let hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
        assert_eq!(sha256_hex(b"Welcome to Amazon S3."), hash);
        let out = s3_sign(
            "PUT",
            "/test$file.text",
            &[],
            &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            hash,
        );
        assert_eq!(
            out.canonical_request,
            "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\nx-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\ndate;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        assert_eq!(
            out.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"
        );
        assert_eq!(
            compact(&out.authorization),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn s3_example_get_bucket_lifecycle() {
        let out = s3_sign("GET", "/", &[("lifecycle", "")], &[], EMPTY_PAYLOAD_SHA256);
        assert_eq!(
            out.canonical_request,
            "GET\n/\nlifecycle=\nhost:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            out.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca"
        );
        assert_eq!(
            compact(&out.authorization),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    #[test]
    fn s3_example_list_objects() {
        let out = s3_sign(
            "GET",
            "/",
            &[("prefix", "J"), ("max-keys", "2")],
            &[],
            EMPTY_PAYLOAD_SHA256,
        );
        assert_eq!(
            out.canonical_request,
            "GET\n/\nmax-keys=2&prefix=J\nhost:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            out.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\ndf57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7"
        );
        assert_eq!(
            compact(&out.authorization),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn encoding_rules() {
        assert_eq!(uri_encode("a b/c+d=e&f%~"), "a%20b%2Fc%2Bd%3De%26f%25~");
        assert_eq!(uri_encode_path("/a b//./../c+"), "/a%20b//./../c%2B");
        assert_eq!(uri_encode_path("/\u{e9}"), "/%C3%A9");
        let q = vec![
            ("uploads".to_owned(), String::new()),
            ("prefix".to_owned(), "a b/".to_owned()),
        ];
        assert_eq!(canonical_query_string(&q), "prefix=a%20b%2F&uploads=");
        assert_eq!(wire_query_string(&q), "prefix=a%20b%2F&uploads");
    }

    #[test]
    fn key_cache_notices_rotation() {
        let cache = SigningKeyCache::new();
        let mut p = SigningParams {
            access_key_id: "AK",
            secret_access_key: "one",
            session_token: None,
            region: "r",
            service: "s3",
            time: UNIX_EPOCH,
        };
        let a = cache.key(&p, "20200101");
        assert_eq!(a, derive_signing_key("one", "20200101", "r", "s3"));
        p.secret_access_key = "two";
        let b = cache.key(&p, "20200101");
        assert_eq!(b, derive_signing_key("two", "20200101", "r", "s3"));
        assert_ne!(a, b);
        assert_eq!(
            cache.key(&p, "20200102"),
            derive_signing_key("two", "20200102", "r", "s3")
        );
    }
}
