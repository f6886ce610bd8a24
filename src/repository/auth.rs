//! Authentication against one repository: Basic is sent with every request; Digest keeps the
//! server's last challenge and answers it (with a growing nonce count), and takes a new one
//! when the server says the nonce is stale or unknown.

use parking_lot::Mutex;

use digest_auth::{AuthContext, HttpMethod, WwwAuthenticateHeader};
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response};
use url::Url;

use crate::config::RepositoryAuth;

pub struct Authenticator {
    auth: RepositoryAuth,
    challenge: Mutex<Option<WwwAuthenticateHeader>>,
}

/// What a 401 means for the request that got it.
pub enum Unauthorized {
    /// A new challenge was taken; send the request again.
    Retry,
    /// The credentials were refused.
    Refused(String),
}

impl Authenticator {
    pub fn new(auth: RepositoryAuth) -> Authenticator {
        Authenticator {
            auth,
            challenge: Mutex::new(None),
        }
    }

    pub fn is_digest(&self) -> bool {
        matches!(self.auth, RepositoryAuth::Digest { .. })
    }

    /// Adds what the scheme needs to a request. Digest without a challenge yet sends nothing:
    /// the server's 401 brings one.
    pub fn apply(&self, req: RequestBuilder, method: &Method, url: &Url) -> RequestBuilder {
        match &self.auth {
            RepositoryAuth::None => req,
            RepositoryAuth::Basic { username, password } => {
                req.basic_auth(username, Some(password.expose()))
            }
            RepositoryAuth::Digest { username, password } => {
                let mut guard = self.challenge.lock();
                let Some(challenge) = guard.as_mut() else {
                    return req;
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
                match challenge.respond(&ctx) {
                    Ok(answer) => match HeaderValue::from_str(&answer.to_header_string()) {
                        Ok(mut v) => {
                            v.set_sensitive(true);
                            req.header(reqwest::header::AUTHORIZATION, v)
                        }
                        Err(_) => req,
                    },
                    Err(_) => req,
                }
            }
        }
    }

    /// Handles a 401. `fresh` tells whether the request was already answering a challenge
    /// received during this same call: then a non-stale 401 means the password is wrong.
    pub fn unauthorized(&self, response: &Response, fresh: bool) -> Unauthorized {
        if !self.is_digest() {
            return Unauthorized::Refused("the server refused the username and password".into());
        }
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.trim_start().to_ascii_lowercase().starts_with("digest"))
            .and_then(|v| digest_auth::parse(v).ok());
        let Some(challenge) = challenge else {
            return Unauthorized::Refused(
                "the server did not offer Digest authentication (try auth = \"basic\")".into(),
            );
        };
        if fresh && !challenge.stale {
            return Unauthorized::Refused("the server refused the username and password".into());
        }
        *self.challenge.lock() = Some(challenge);
        Unauthorized::Retry
    }
}
