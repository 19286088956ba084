//! Listening errors a user can act on: which setting names the address, and how to change it.

use std::io;

/// What names a listening address: the flag (if the command has one) and the variable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setting {
    /// What listens there, for the message ("the gateway", "the cache node's RESP listener").
    pub(crate) what: &'static str,
    pub(crate) flag: Option<&'static str>,
    pub(crate) env: &'static str,
}

/// The gateway's `listen`.
pub(crate) const API_LISTEN: Setting = Setting {
    what: "the gateway",
    flag: Some("--listen"),
    env: "LARDER_API_LISTEN",
};

/// The setting of a cache node's listener, by its field name in `[cache]`.
pub(crate) fn cache(field: &str) -> Setting {
    match field {
        "resp_addr" => Setting {
            what: "the cache node's Redis-protocol listener",
            flag: Some("--resp-addr"),
            env: "LARDER_CACHE_RESP_ADDR",
        },
        "grpc_addr" => Setting {
            what: "the cache node's gRPC listener",
            flag: Some("--grpc-addr"),
            env: "LARDER_CACHE_GRPC_ADDR",
        },
        _ => Setting {
            what: "the cache node's admin listener",
            flag: Some("--admin-addr"),
            env: "LARDER_CACHE_ADMIN_ADDR",
        },
    }
}

/// One sentence on why `addr` cannot be listened on for `setting`, and how to change it.
pub(crate) fn explain(err: &io::Error, addr: &str, setting: Setting) -> anyhow::Error {
    let how = match setting.flag {
        Some(flag) => format!("{flag} ADDR or {}=ADDR", setting.env),
        None => format!("{}=ADDR", setting.env),
    };
    let why = match err.kind() {
        io::ErrorKind::AddrInUse => {
            "is already in use (another program, perhaps another larder, listens there)".to_owned()
        }
        io::ErrorKind::PermissionDenied => {
            "needs privileges this process lacks (ports below 1024 usually do)".to_owned()
        }
        io::ErrorKind::AddrNotAvailable => "is not an address of this machine".to_owned(),
        _ => format!("cannot be listened on ({err})"),
    };
    anyhow::anyhow!(
        "{addr}, where {} would listen, {why}; choose another with {how}",
        setting.what
    )
}

/// The explanation of a cache node's failure to bind, or the error as it is.
pub(crate) fn cache_error(err: larder_cache::Error) -> anyhow::Error {
    match err {
        larder_cache::Error::Bind {
            field,
            addr,
            source,
        } => explain(&source, &addr, cache(field)),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_names_the_setting_once() {
        let err = io::Error::from(io::ErrorKind::AddrInUse);
        let text = explain(&err, "127.0.0.1:8080", API_LISTEN).to_string();
        assert_eq!(
            text,
            "127.0.0.1:8080, where the gateway would listen, is already in use (another \
             program, perhaps another larder, listens there); choose another with --listen \
             ADDR or LARDER_API_LISTEN=ADDR"
        );
        let text = explain(&err, "127.0.0.1:6380", cache("resp_addr")).to_string();
        assert!(
            text.contains("--resp-addr ADDR or LARDER_CACHE_RESP_ADDR=ADDR"),
            "{text}"
        );
    }
}
