//! Configuration every binary shares: where Redis is, which key prefix this deployment uses, and the
//! small typed environment reader the binaries build their own settings with.
//!
//! Settings come from the process environment, and from a `.env` file in the working directory when one
//! exists (the environment wins). Every error names the setting, the value it got and what it accepts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::keys::Prefix;

/// A setting that was present but unusable.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}={value:?} is invalid: expected {expected}")]
pub struct ConfigError {
    /// The environment variable, e.g. `REDIS_URL`.
    pub name: String,
    /// What it was set to (secrets are replaced by `<redacted>`).
    pub value: String,
    /// The accepted values, in words.
    pub expected: String,
}

/// Loads `.env` from the working directory if there is one. Variables already set in the environment
/// are left alone. A malformed `.env` is reported rather than silently skipped.
pub fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(ConfigError {
            name: ".env".into(),
            value: e.to_string(),
            expected: "lines of NAME=value".into(),
        }),
    }
}

/// Typed access to environment variables. Binaries read their settings through this so that every
/// error message has the same shape.
#[derive(Debug, Default, Clone, Copy)]
pub struct Env;

impl Env {
    /// The raw value, `None` when unset or empty.
    pub fn raw(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }

    /// The first of several names that is set: the current name first, then older aliases.
    pub fn raw_any(&self, names: &[&str]) -> Option<(String, String)> {
        names
            .iter()
            .find_map(|n| self.raw(n).map(|v| ((*n).to_string(), v)))
    }

    /// Parses a value with `FromStr`, or returns `default` when unset.
    pub fn parse<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        self.parse_any(&[name], default, expected)
    }

    /// Like [`Env::parse`], accepting older names for the same setting.
    pub fn parse_any<T: FromStr>(
        &self,
        names: &[&str],
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.raw_any(names) {
            None => Ok(default),
            Some((name, value)) => value.trim().parse().map_err(|_| ConfigError {
                name,
                value,
                expected: expected.into(),
            }),
        }
    }

    /// A boolean: `1/0`, `true/false`, `yes/no`, `on/off`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        self.flag_any(&[name], default)
    }

    /// Like [`Env::flag`], accepting older names for the same setting.
    pub fn flag_any(&self, names: &[&str], default: bool) -> Result<bool, ConfigError> {
        match self.raw_any(names) {
            None => Ok(default),
            Some((name, value)) => parse_flag(&value).ok_or(ConfigError {
                name,
                value,
                expected: "one of 1, 0, true, false, yes, no, on, off".into(),
            }),
        }
    }

    /// A duration in (possibly fractional) seconds.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or(ConfigError {
                    name: name.into(),
                    value,
                    expected: "a number of seconds, e.g. 5 or 0.5".into(),
                }),
        }
    }
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Where Redis is and which key prefix this deployment uses.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. Kept secret because it can hold a
    /// password; [`RedisConfig::display_url`] gives a loggable form.
    pub url: SecretString,
    /// The key prefix with its Cluster hash tag, e.g. `{radio}`.
    pub prefix: Prefix,
    /// How long a process starting while Redis cannot be reached waits for it
    /// (`REDIS_CONNECT_TIMEOUT_SECS`; 0: fail at once).
    pub connect_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.display_url())
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The default Redis address, a server on this machine.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How long a starting process waits for an unreachable Redis unless `REDIS_CONNECT_TIMEOUT_SECS` says.
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

impl RedisConfig {
    /// Builds a config from explicit values (tests, tools).
    pub fn new(url: impl Into<String>, prefix: Prefix) -> Result<Self, ConfigError> {
        let url = url.into();
        check_redis_url("REDIS_URL", &url)?;
        Ok(Self {
            url: SecretString::from(url),
            prefix,
            connect_timeout: DEFAULT_REDIS_CONNECT_TIMEOUT,
        })
    }

    /// Reads `REDIS_URL`, `RADIO_PREFIX` and `REDIS_CONNECT_TIMEOUT_SECS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env
            .raw("REDIS_URL")
            .unwrap_or_else(|| DEFAULT_REDIS_URL.into());
        check_redis_url("REDIS_URL", &url)?;
        let prefix = match env.raw("RADIO_PREFIX") {
            None => Prefix::default(),
            Some(p) => Prefix::new(&p).map_err(|expected| ConfigError {
                name: "RADIO_PREFIX".into(),
                value: p,
                expected: expected.into(),
            })?,
        };
        Ok(Self {
            url: SecretString::from(url),
            prefix,
            connect_timeout: env
                .seconds("REDIS_CONNECT_TIMEOUT_SECS", DEFAULT_REDIS_CONNECT_TIMEOUT)?,
        })
    }

    /// The URL with any password replaced, for logs and error messages.
    pub fn display_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }
}

fn check_redis_url(name: &str, url: &str) -> Result<(), ConfigError> {
    let ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme));
    if url.starts_with(crate::queue::SentinelUrl::SCHEME_PREFIX) {
        return crate::queue::SentinelUrl::parse(url)
            .map(|_| ())
            .map_err(|why| ConfigError {
                name: name.into(),
                value: redact_url(url),
                expected: format!(
                    "redis+sentinel://[user:password@]host:port,host:port/<primary name>[/db] ({why})"
                ),
            });
    }
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            name: name.into(),
            value: redact_url(url),
            expected: "a URL like redis://127.0.0.1:6379, redis://:password@host:6379/0, rediss://host:6380 or redis+sentinel://host:26379,host:26380/radio"
                .into(),
        })
    }
}

/// Replaces the password in `scheme://user:password@host` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://***@{host}"),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_display_form() {
        assert_eq!(
            redact_url("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("rediss://alice:hunter2@cache:6380"),
            "rediss://alice:***@cache:6380"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let cfg = RedisConfig::new("redis://:hunter2@h:1", Prefix::default()).expect("valid url");
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn a_bad_url_names_the_setting() {
        let err = RedisConfig::new("http://localhost", Prefix::default()).expect_err("not redis");
        assert_eq!(err.name, "REDIS_URL");
        assert!(err.to_string().contains("redis://"));
    }

    #[test]
    fn flags_accept_the_usual_spellings() {
        for (s, v) in [("1", true), ("YES", true), ("off", false), ("false", false)] {
            assert_eq!(parse_flag(s), Some(v), "{s}");
        }
        assert_eq!(parse_flag("maybe"), None);
    }
}
