//! Who may read and who may act, and the headers every response carries.
//!
//! The rules, in one place:
//! - Without `RADIO_WEB_TOKEN` the inspector only binds a loopback address, serves only loopback peers,
//!   and only requests addressed to `localhost` or a loopback IP: a web page whose own host name resolves
//!   to 127.0.0.1 (DNS rebinding) is refused by its `Host`.
//! - With it, every request must present the token (`Authorization: Bearer …`, or the cookie the login
//!   form sets), loopback included: a reverse proxy in front makes every client a loopback peer.
//! - An action (any request that is not GET or HEAD) also needs the `X-Radio-Inspector: 1` header and,
//!   when the browser sends an `Origin`, one naming this server: a page on another site cannot make a
//!   browser send either, so it cannot cancel jobs through an operator's open session.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderValue, Method, header};
use secrecy::{ExposeSecret, SecretString};

/// The cookie the login form sets.
pub const COOKIE: &str = "radio_web_token";
/// The header every action must carry.
pub const ACTION_HEADER: &str = "x-radio-inspector";

/// The access policy of one inspector.
#[derive(Debug)]
pub struct Access {
    token: Option<SecretString>,
}

/// Why a request was refused; the text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token is configured and the peer is not on this machine.
    NotLoopback,
    /// No token is configured and the request names a host other than `localhost` or a loopback IP.
    ForeignHost,
    /// A token is needed and none (or a wrong one) was presented.
    Token { acting: bool },
    /// An action without the inspector's header, or from another site's page.
    CrossSite,
}

impl Refusal {
    /// Whether signing in would help (the pages redirect to the login form).
    pub fn wants_login(&self) -> bool {
        matches!(self, Refusal::Token { .. })
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Refusal::Token { .. } => StatusCode::UNAUTHORIZED,
            Refusal::NotLoopback | Refusal::ForeignHost | Refusal::CrossSite => {
                StatusCode::FORBIDDEN
            }
        }
    }

    /// What the client is told.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::NotLoopback => {
                "this inspector serves only its own machine: set RADIO_WEB_TOKEN to open it to others"
            }
            Refusal::ForeignHost => {
                "without RADIO_WEB_TOKEN this inspector answers only requests addressed to localhost or a loopback IP"
            }
            Refusal::Token { acting: true } => {
                "actions need the inspector's token: send Authorization: Bearer <RADIO_WEB_TOKEN> or sign in at /login"
            }
            Refusal::Token { acting: false } => {
                "this inspector needs its token: send Authorization: Bearer <RADIO_WEB_TOKEN> or sign in at /login"
            }
            Refusal::CrossSite => {
                "actions must come from the inspector's own pages (the X-Radio-Inspector: 1 header, and an Origin of this server if any)"
            }
        }
    }
}

impl Access {
    /// A policy with `token` (surrounding blanks dropped; an empty one counts as none).
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
        }
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Refuses a token the login cookie cannot carry, and to listen anywhere but loopback without one.
    pub fn check_config(&self, addr: SocketAddr) -> Result<(), String> {
        if let Some(token) = &self.token {
            let cookie_safe = token
                .expose_secret()
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'));
            if !cookie_safe {
                return Err(
                    "RADIO_WEB_TOKEN may hold only printable ASCII without ; , \" or \\ \
                     (it travels in a cookie): openssl rand -hex 32 makes a good one"
                        .into(),
                );
            }
            return Ok(());
        }
        if addr.ip().is_loopback() {
            return Ok(());
        }
        Err(format!(
            "refusing to serve the inspector on {addr} without RADIO_WEB_TOKEN: anyone who can reach it could \
             cancel and retry jobs. Set RADIO_WEB_TOKEN to a long random string (openssl rand -hex 32), or \
             bind a loopback address (the default, 127.0.0.1:9402)"
        ))
    }

    /// Whether `token` is this inspector's token (compared in constant time).
    pub fn is_token(&self, presented: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| constant_time_eq(t.expose_secret().as_bytes(), presented.as_bytes()))
    }

    /// Decides one request from `peer` with `method` and `headers`.
    pub fn check(&self, peer: IpAddr, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let acting = !matches!(*method, Method::GET | Method::HEAD);
        if acting && !same_site(headers) {
            return Err(Refusal::CrossSite);
        }
        if self.token.is_none() {
            if !peer.is_loopback() {
                return Err(Refusal::NotLoopback);
            }
            if !addressed_to_loopback(headers) {
                return Err(Refusal::ForeignHost);
            }
            return Ok(());
        }
        if presented_token(headers).is_some_and(|t| self.is_token(t)) {
            return Ok(());
        }
        Err(Refusal::Token { acting })
    }
}

/// The request's `Host` is `localhost` or a loopback IP literal (any port).
fn addressed_to_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.0 clients may send none; a browser always does.
        return true;
    };
    let name = match host.strip_prefix('[') {
        // [::1]:port
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The token a request presents: a bearer token, or the login cookie.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// An action carries the inspector's header, and any `Origin` names the host it was sent to.
fn same_site(headers: &HeaderMap) -> bool {
    if headers.get(ACTION_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The headers every response carries: nothing loads from elsewhere, nothing frames the pages, no
/// referrer leaks a job id, and nothing is cached (the pages show live state).
pub fn security_headers(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn without_a_token_only_loopback_is_served_and_bound() {
        let open = Access::new(None);
        assert_eq!(open.check(LOCAL, &Method::GET, &headers(&[])), Ok(()));
        assert_eq!(
            open.check(REMOTE, &Method::GET, &headers(&[])),
            Err(Refusal::NotLoopback)
        );
        assert!(
            open.check_config("127.0.0.1:9402".parse().expect("addr"))
                .is_ok()
        );
        let refused = open
            .check_config("0.0.0.0:9402".parse().expect("addr"))
            .expect_err("0.0.0.0 without a token");
        assert!(refused.contains("RADIO_WEB_TOKEN"), "{refused}");
        assert!(
            !Access::new(Some("  ".into())).has_token(),
            "a blank token is none"
        );
        let cookie_breaker = Access::new(Some("a;b".into()));
        assert!(
            cookie_breaker
                .check_config("0.0.0.0:9402".parse().expect("addr"))
                .is_err()
        );
        assert!(
            Access::new(Some(" s3cret\n".into())).is_token("s3cret"),
            "stored trimmed"
        );
    }

    #[test]
    fn without_a_token_only_requests_addressed_to_loopback_are_served() {
        let open = Access::new(None);
        for host in [
            "127.0.0.1:9402",
            "localhost:9402",
            "LOCALHOST",
            "[::1]:9402",
            "127.0.0.2",
        ] {
            assert_eq!(
                open.check(LOCAL, &Method::GET, &headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        // A page of evil.example whose name now resolves to 127.0.0.1 (DNS rebinding).
        for host in ["evil.example:9402", "evil.example", "192.0.2.2:9402"] {
            assert_eq!(
                open.check(LOCAL, &Method::GET, &headers(&[("host", host)])),
                Err(Refusal::ForeignHost),
                "{host}"
            );
        }
        // Without a token an action needs the inspector's header just the same.
        assert_eq!(
            open.check(
                LOCAL,
                &Method::POST,
                &headers(&[("host", "127.0.0.1:9402")])
            ),
            Err(Refusal::CrossSite)
        );
    }

    #[test]
    fn with_a_token_every_request_needs_it_loopback_included() {
        let access = Access::new(Some("s3cret".into()));
        let act = [("x-radio-inspector", "1")];
        assert_eq!(
            access.check(LOCAL, &Method::GET, &headers(&[])),
            Err(Refusal::Token { acting: false }),
            "a reverse proxy makes every client a loopback peer"
        );
        assert_eq!(
            access.check(LOCAL, &Method::POST, &headers(&act)),
            Err(Refusal::Token { acting: true })
        );
        assert_eq!(
            access.check(REMOTE, &Method::GET, &headers(&[])),
            Err(Refusal::Token { acting: false })
        );
        let bearer = [
            ("x-radio-inspector", "1"),
            ("authorization", "Bearer s3cret"),
        ];
        assert_eq!(
            access.check(REMOTE, &Method::POST, &headers(&bearer)),
            Ok(())
        );
        let cookie = [
            ("x-radio-inspector", "1"),
            ("cookie", "a=b; radio_web_token=s3cret"),
        ];
        assert_eq!(
            access.check(REMOTE, &Method::POST, &headers(&cookie)),
            Ok(())
        );
        let wrong = [("authorization", "Bearer s3cre")];
        assert_eq!(
            access.check(REMOTE, &Method::GET, &headers(&wrong)),
            Err(Refusal::Token { acting: false })
        );
    }

    #[test]
    fn actions_from_another_site_are_refused_even_with_the_cookie() {
        let access = Access::new(Some("s3cret".into()));
        let no_header = [("cookie", "radio_web_token=s3cret")];
        assert_eq!(
            access.check(LOCAL, &Method::POST, &headers(&no_header)),
            Err(Refusal::CrossSite)
        );
        let other_origin = [
            ("x-radio-inspector", "1"),
            ("cookie", "radio_web_token=s3cret"),
            ("host", "127.0.0.1:9402"),
            ("origin", "https://evil.example"),
        ];
        assert_eq!(
            access.check(LOCAL, &Method::POST, &headers(&other_origin)),
            Err(Refusal::CrossSite)
        );
        let own_origin = [
            ("x-radio-inspector", "1"),
            ("cookie", "radio_web_token=s3cret"),
            ("host", "127.0.0.1:9402"),
            ("origin", "http://127.0.0.1:9402"),
        ];
        assert_eq!(
            access.check(LOCAL, &Method::POST, &headers(&own_origin)),
            Ok(())
        );
    }
}
