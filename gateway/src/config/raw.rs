//! The configuration file as written: serde structs that mirror the TOML one to one.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a silently ignored
//! setting. Nothing here is validated; [`super::Config`] is built from these by `TryFrom`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) runtime: RawRuntime,
    #[serde(default)]
    pub(crate) log: RawLog,
    #[serde(default)]
    pub(crate) listener: Vec<RawListener>,
    #[serde(default)]
    pub(crate) tls: RawTls,
    #[serde(default)]
    pub(crate) upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub(crate) residency: RawResidency,
    #[serde(default)]
    pub(crate) http: RawHttp,
    #[serde(default)]
    pub(crate) http2: RawHttp2,
    #[serde(default)]
    pub(crate) guard: RawGuard,
    #[serde(default)]
    pub(crate) audit: RawAudit,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default)]
    pub(crate) identity: RawIdentity,
    #[serde(default)]
    pub(crate) policy: RawPolicy,
    #[serde(default)]
    pub(crate) redaction: RawRedaction,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    pub(crate) worker_threads: Option<usize>,
    pub(crate) user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) format: Option<String>,
    pub(crate) level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) name: Option<String>,
    pub(crate) address: String,
    pub(crate) upstream: String,
    #[serde(default)]
    pub(crate) identity: Vec<String>,
    pub(crate) client_ca: Option<String>,
    pub(crate) client_cert: Option<String>,
    pub(crate) protocol: Option<String>,
    #[serde(default)]
    pub(crate) proxy_protocol_from: Vec<String>,
    pub(crate) mode: Option<String>,
    pub(crate) passthrough: Option<bool>,
    pub(crate) tproxy: Option<bool>,
    pub(crate) backlog: Option<usize>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_ip: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) min_version: Option<String>,
    #[serde(default)]
    pub(crate) certificate: Vec<RawCertificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert_file: String,
    pub(crate) key_file: String,
    #[serde(default)]
    pub(crate) server_names: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) address: String,
    pub(crate) connect_timeout: Option<String>,
    pub(crate) response_header_timeout: Option<String>,
    pub(crate) pool_max_idle: Option<usize>,
    pub(crate) pool_idle_timeout: Option<String>,
    pub(crate) credential_file: Option<String>,
    pub(crate) credential_header: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) transparent_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResidency {
    pub(crate) region: Option<String>,
    #[serde(default)]
    pub(crate) in_region_cidrs: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub(crate) trust_request_id: Option<bool>,
    pub(crate) underscores_in_headers: Option<bool>,
    pub(crate) max_request_line_bytes: Option<usize>,
    pub(crate) max_header_bytes: Option<usize>,
    pub(crate) max_headers: Option<usize>,
    pub(crate) max_request_body_bytes: Option<u64>,
    pub(crate) max_decompression_ratio: Option<usize>,
    pub(crate) header_timeout: Option<String>,
    pub(crate) keepalive_timeout: Option<String>,
    pub(crate) body_idle_timeout: Option<String>,
    pub(crate) body_timeout: Option<String>,
    pub(crate) min_body_rate: Option<u64>,
    pub(crate) drain_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp2 {
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) max_header_list_bytes: Option<u32>,
    pub(crate) initial_stream_window_bytes: Option<u32>,
    pub(crate) initial_connection_window_bytes: Option<u32>,
    pub(crate) max_frame_bytes: Option<u32>,
    pub(crate) max_send_buffer_bytes: Option<usize>,
    pub(crate) max_pending_accept_resets: Option<usize>,
    pub(crate) max_local_error_resets: Option<usize>,
    pub(crate) max_control_frames: Option<u32>,
    pub(crate) control_frames_per_second: Option<u32>,
    pub(crate) keepalive_interval: Option<String>,
    pub(crate) keepalive_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuard {
    pub(crate) mode: Option<String>,
    #[serde(default)]
    pub(crate) cgroups: Vec<String>,
    #[serde(default)]
    pub(crate) gateway: Vec<String>,
    #[serde(default)]
    pub(crate) allow: Vec<String>,
    #[serde(default)]
    pub(crate) serve_ports: Vec<u16>,
    pub(crate) required: Option<bool>,
    pub(crate) pin_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) dir: Option<String>,
    pub(crate) key_dir: Option<String>,
    pub(crate) fsync: Option<String>,
    pub(crate) batch_delay: Option<String>,
    pub(crate) checkpoint_every: Option<u64>,
    pub(crate) checkpoint_interval: Option<String>,
    pub(crate) segment_max_bytes: Option<u64>,
    pub(crate) segment_max_age: Option<String>,
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) ship: Option<RawShip>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShip {
    pub(crate) address: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) ca_file: Option<String>,
    pub(crate) client_cert: Option<String>,
    pub(crate) client_key: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) retry_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub(crate) forward_headers: Option<bool>,
    pub(crate) jwt: Option<RawJwt>,
    #[serde(default)]
    pub(crate) api_keys: Vec<RawApiKey>,
    pub(crate) api_keys_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub(crate) jwks_file: String,
    #[serde(default)]
    pub(crate) issuers: Vec<String>,
    #[serde(default)]
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Option<Vec<String>>,
    pub(crate) leeway: Option<String>,
    pub(crate) subject_claim: Option<String>,
    pub(crate) groups_claim: Option<String>,
    pub(crate) regions_claim: Option<String>,
    #[serde(default)]
    pub(crate) attribute_claims: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    pub(crate) id: String,
    pub(crate) sha256: String,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    #[serde(default)]
    pub(crate) regions: Vec<String>,
    #[serde(default)]
    pub(crate) attributes: BTreeMap<String, String>,
}

/// The file named by `identity.api_keys_file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKeysFile {
    #[serde(default)]
    pub(crate) api_keys: Vec<RawApiKey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    pub(crate) rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) kinds: Vec<String>,
    #[serde(default)]
    pub(crate) principals: Vec<String>,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    #[serde(default)]
    pub(crate) attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub(crate) source_cidrs: Vec<String>,
    #[serde(default)]
    pub(crate) hosts: Vec<String>,
    #[serde(default)]
    pub(crate) methods: Vec<String>,
    #[serde(default)]
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) models: Vec<String>,
    pub(crate) require_region: Option<bool>,
    pub(crate) action: String,
    pub(crate) upstream: Option<String>,
    pub(crate) redaction: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedaction {
    pub(crate) hash_key_file: Option<String>,
    #[serde(default)]
    pub(crate) profiles: BTreeMap<String, RawProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    pub(crate) entities: Option<Vec<String>>,
    pub(crate) direction: Option<String>,
    pub(crate) default_operator: Option<String>,
    #[serde(default)]
    pub(crate) operators: BTreeMap<String, String>,
    pub(crate) mask_keep_suffix: Option<usize>,
    #[serde(default)]
    pub(crate) patterns: Vec<String>,
    #[serde(default)]
    pub(crate) words: Vec<String>,
    pub(crate) fail: Option<String>,
    pub(crate) max_hold_back: Option<usize>,
    pub(crate) other_content: Option<String>,
    #[serde(default)]
    pub(crate) always: Vec<String>,
    #[serde(default)]
    pub(crate) never: Vec<String>,
}
