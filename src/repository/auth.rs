//! Authentication against one repository: Basic is sent with every request; Digest keeps the
//! server's last challenge and answers it (with a growing nonce count), and takes a new one
//! when the server says the nonce is stale or unknown. A username without `auth` follows the
//! server's challenge (DESIGN 5): Digest when offered, Basic only over https (over plain http
//! it would hand the password to anyone on the path).

use parking_lot::Mutex;

use digest_auth::{AuthContext, HttpMethod, WwwAuthenticateHeader};
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response};
use url::Url;

use crate::config::{Password, RepositoryAuth};

/// The scheme in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Digest,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Basic => "Basic",
            Scheme::Digest => "Digest",
        }
    }
}

pub struct Authenticator {
    /// `None` without credentials. The password may be missing in this process (a command
    /// that only activates never sends a request); a request then fails before it is sent.
    credentials: Option<(String, Password)>,
    /// Configured (`auth = ...`) rather than left to the server.
    fixed: Option<Scheme>,
    https: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The scheme in use: the configured one, or what the server offered.
    scheme: Option<Scheme>,
    challenge: Option<WwwAuthenticateHeader>,
}

/// What a 401 means for the request that got it.
pub enum Unauthorized {
    /// A new challenge was taken; send the request again.
    Retry,
    /// The credentials were refused.
    Refused(String),
}

impl Authenticator {
    pub fn new(auth: &RepositoryAuth, url: &Url) -> Authenticator {
        let (fixed, credentials) = match auth {
            RepositoryAuth::None => (None, None),
            RepositoryAuth::Basic { username, password } => {
                (Some(Scheme::Basic), Some((username, password)))
            }
            RepositoryAuth::Digest { username, password } => {
                (Some(Scheme::Digest), Some((username, password)))
            }
            RepositoryAuth::Auto { username, password } => (None, Some((username, password))),
        };
        Authenticator {
            credentials: credentials.map(|(u, p)| (u.clone(), p.clone())),
            fixed,
            https: url.scheme() == "https",
            state: Mutex::new(State {
                scheme: fixed,
                challenge: None,
            }),
        }
    }

    /// Whether requests can be answered: `Err` (how to provide it) when the password is not
    /// to be had in this process.
    pub fn ready(&self) -> Result<(), String> {
        match &self.credentials {
            Some((_, password)) => password.get().map(|_| ()),
            None => Ok(()),
        }
    }

    /// The scheme used so far (`None`: none needed yet, or none configured).
    pub fn scheme(&self) -> Option<Scheme> {
        self.state.lock().scheme
    }

    /// Adds what the scheme needs to a request, and says which scheme it answered with
    /// (`None`: no credentials sent). Digest without a challenge yet sends nothing: the
    /// server's 401 brings one. Call [`Authenticator::ready`] first.
    pub fn apply(
        &self,
        req: RequestBuilder,
        method: &Method,
        url: &Url,
    ) -> (RequestBuilder, Option<Scheme>) {
        let Some((username, Password::Loaded(password))) = &self.credentials else {
            return (req, None);
        };
        let mut state = self.state.lock();
        match state.scheme {
            None => (req, None),
            Some(Scheme::Basic) => (
                req.basic_auth(username, Some(password.expose())),
                Some(Scheme::Basic),
            ),
            Some(Scheme::Digest) => {
                let Some(challenge) = state.challenge.as_mut() else {
                    return (req, None);
                };
                let uri = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_string(),
                };
                let ctx = AuthContext::new_with_method(
                    username.as_str(),
                    password.expose(),
                    uri,
                    Option::<&[u8]>::None,
                    HttpMethod(method.as_str().to_string().into()),
                );
                let header = challenge
                    .respond(&ctx)
                    .ok()
                    .and_then(|a| HeaderValue::from_str(&a.to_header_string()).ok());
                match header {
                    Some(mut v) => {
                        v.set_sensitive(true);
                        (
                            req.header(reqwest::header::AUTHORIZATION, v),
                            Some(Scheme::Digest),
                        )
                    }
                    None => (req, None),
                }
            }
        }
    }

    /// Handles a 401 to a request sent with `sent` (what [`Authenticator::apply`] said).
    /// `fresh` tells whether the request was already answering a challenge received during
    /// this same call: then a non-stale 401 means the password is wrong.
    pub fn unauthorized(
        &self,
        response: &Response,
        fresh: bool,
        sent: Option<Scheme>,
    ) -> Unauthorized {
        if self.credentials.is_none() {
            return Unauthorized::Refused(
                "the server asks for a username and password; set username and password_file \
                 (or credential) for this repository"
                    .into(),
            );
        }
        let offers = |scheme: &str| {
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.trim_start().to_ascii_lowercase().starts_with(scheme))
                .map(str::to_string)
        };
        let digest = offers("digest").and_then(|v| digest_auth::parse(&v).ok());
        let basic = offers("basic").is_some();
        let mut state = self.state.lock();
        let refused =
            || Unauthorized::Refused("the server refused the username and password".into());
        match (self.fixed, state.scheme) {
            (Some(Scheme::Basic), _) => refused(),
            (Some(Scheme::Digest), _) | (None, Some(Scheme::Digest)) => {
                let Some(challenge) = digest else {
                    return Unauthorized::Refused(if basic && self.fixed.is_some() {
                        "the server did not offer Digest authentication (try auth = \"basic\")"
                            .into()
                    } else {
                        "the server no longer offers Digest authentication".into()
                    });
                };
                if fresh && !challenge.stale {
                    return refused();
                }
                state.challenge = Some(challenge);
                Unauthorized::Retry
            }
            // Another request chose Basic while this one was under way without credentials.
            (None, Some(Scheme::Basic)) if sent.is_none() => Unauthorized::Retry,
            (None, Some(Scheme::Basic)) => refused(),
            (None, None) => {
                if let Some(challenge) = digest {
                    state.scheme = Some(Scheme::Digest);
                    state.challenge = Some(challenge);
                    Unauthorized::Retry
                } else if basic && self.https {
                    state.scheme = Some(Scheme::Basic);
                    Unauthorized::Retry
                } else if basic {
                    Unauthorized::Refused(
                        "the server offers only Basic authentication, which over plain http \
                         sends the password readable to anyone on the path; use https, or set \
                         auth = \"basic\" to send it anyway"
                            .into(),
                    )
                } else {
                    Unauthorized::Refused(
                        "the server offers no authentication scheme this agent speaks \
                         (Digest, Basic)"
                            .into(),
                    )
                }
            }
        }
    }
}
