//! The SSRF guard inside the HTTP client's connector: every DNS answer passes the address policy
//! ([`crate::addresses`]) before it is dialled, so the address checked is the address dialled.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::addresses::{is_allowed, Blocked};

/// A resolver that drops every disallowed answer, and fails when none is left.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let answers: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, blocked): (Vec<SocketAddr>, Vec<SocketAddr>) =
                answers.into_iter().partition(|a| is_allowed(a.ip()));
            if allowed.is_empty() {
                let addresses = blocked
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(Blocked { host, addresses }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolver_drops_blocked_answers() {
        let err = GuardedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is blocked");
        let blocked = err.downcast_ref::<Blocked>().expect("a Blocked error");
        assert_eq!(blocked.host, "localhost");
        assert!(blocked.addresses.contains("127.0.0.1") || blocked.addresses.contains("::1"));
    }
}
