//! Networks in settings (`trusted_proxies`, `webhook.allowed_networks`): a CIDR block
//! (`10.0.0.0/8`, `fd00::/8`) or one address (`10.0.0.1`, taken as `/32` or `/128`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub IpNet);

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(network) = text.parse::<IpNet>() {
            // `10.1.2.3/8` is taken to mean the network it lies in, `10.0.0.0/8`.
            return Ok(Self(network.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|address| Self(IpNet::from(address)))
            .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR block such as 10.0.0.0/8"))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A comma-separated list, as environment variables give it.
pub fn parse_list(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| item.parse::<Network>().map(|network| network.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_blocks_parse() {
        assert_eq!(parse_list("10.0.0.1, 10.0.0.0/8,::1").unwrap().len(), 3);
        assert_eq!("10.0.0.1".parse::<Network>().unwrap().to_string(), "10.0.0.1/32");
        assert_eq!("::1".parse::<Network>().unwrap().to_string(), "::1/128");
        assert_eq!("10.1.2.3/8".parse::<Network>().unwrap().to_string(), "10.0.0.0/8");
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("proxy.internal".parse::<Network>().is_err());
        assert_eq!(parse_list(" ").unwrap(), vec![]);
    }
}
