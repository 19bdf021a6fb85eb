//! A strict local stand-in for Microsoft's token endpoint and the Microsoft Graph routes winmdm
//! uses, on loopback HTTPS with its own test CA (give `ca_pem` to `--graph-ca`), written from
//! Microsoft's pages (see `src/tenant/mod.rs` for the list):
//!
//! * `POST /{tenant}/oauth2/v2.0/token` (client credentials): verifies the client assertion's
//!   signature (RS256 or PS256) against the certificate registered on the app (by `x5t#S256` or
//!   `x5t`), its `aud` (this endpoint), `iss` = `sub` = the client id, `exp`/`nbf`, a fresh
//!   `jti`, the assertion type and the `.default` scope; or a client secret. Errors are Entra's
//!   `{"error","error_description":"AADSTS…"}`.
//! * Graph: a valid, unexpired bearer token; `@odata.type` required and unknown properties
//!   refused where Graph does; the import state machine (`pending` → `complete`, or `error`
//!   806 `ZtdDeviceAlreadyAssigned` for a hardware hash already registered); paging by
//!   `@odata.nextLink` with [`PAGE_SIZE`] items; `429` + `Retry-After` on demand; Graph's error
//!   body `{"error":{"code","message"}}`; deployment profiles only under `/beta`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Map, Value};

/// Items per page of a collection.
pub const PAGE_SIZE: usize = 2;

/// Everything the stand-in holds.
#[derive(Default)]
pub struct State {
    pub tenant_id: String,
    pub client_id: String,
    /// DER certificates registered on the app.
    pub certs: Vec<Vec<u8>>,
    /// A client secret registered on the app.
    pub secret: Option<String>,
    /// Issued access tokens → expiry (Unix seconds).
    pub tokens: HashMap<String, i64>,
    jtis: HashSet<String>,
    /// importedWindowsAutopilotDeviceIdentity by id.
    pub imported: BTreeMap<String, Value>,
    /// windowsAutopilotDeviceIdentity by id.
    pub identities: BTreeMap<String, Value>,
    /// Hardware hashes registered → identity id.
    pub hashes: HashMap<String, String>,
    /// Deployment profiles by id.
    pub profiles: BTreeMap<String, Value>,
    /// Assignments: (profile id, assignment).
    pub assignments: Vec<(String, Value)>,
    /// Groups by id.
    pub groups: BTreeMap<String, Value>,
    /// Entra devices (directory objects) by object id.
    pub devices: BTreeMap<String, Value>,
    /// Answer 429 to the next n Graph requests.
    pub throttle_next: u32,
    /// 429s answered.
    pub throttled: u32,
    /// Accepted writes (method, path).
    pub writes: Vec<(String, String)>,
    /// Every request: (method, path with query, status).
    pub log: Vec<(String, String, u16)>,
    /// Why requests were refused.
    pub refusals: Vec<String>,
    /// Token requests answered 200.
    pub tokens_issued: u32,
}

pub struct GraphStandIn {
    pub port: u16,
    pub ca_pem: String,
    pub state: Arc<Mutex<State>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

static IDS: AtomicU64 = AtomicU64::new(1);

fn guid() -> String {
    let n = IDS.fetch_add(1, Ordering::SeqCst);
    let r = winmdm::clock::random_hex(12);
    format!("{:08x}-0000-4000-8000-{}", n, r)
}

fn now() -> i64 {
    winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock)
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(h, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (pct_decode(k), pct_decode(v)))
        .collect()
}

fn graph_error(status: u16, code: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"code": code, "message": message,
            "innerError": {"date": "2026-01-01T00:00:00", "request-id": guid(), "client-request-id": guid()}}}),
    )
}

fn entra_error(status: u16, error: &str, description: &str) -> (u16, Value) {
    (
        status,
        json!({"error": error, "error_description": description, "error_codes": [700027],
               "timestamp": "2026-01-01 00:00:00Z", "trace_id": guid(), "correlation_id": guid()}),
    )
}

const IMPORTED_KEYS: &[&str] = &[
    "@odata.type",
    "id",
    "groupTag",
    "serialNumber",
    "productKey",
    "importId",
    "hardwareIdentifier",
    "state",
    "assignedUserPrincipalName",
];
const UPDATE_KEYS: &[&str] = &[
    "userPrincipalName",
    "addressableUserName",
    "groupTag",
    "displayName",
];
const PROFILE_KEYS: &[&str] = &[
    "@odata.type",
    "id",
    "displayName",
    "description",
    "language",
    "locale",
    "createdDateTime",
    "lastModifiedDateTime",
    "outOfBoxExperienceSettings",
    "outOfBoxExperienceSetting",
    "enrollmentStatusScreenSettings",
    "extractHardwareHash",
    "hardwareHashExtractionEnabled",
    "deviceNameTemplate",
    "deviceType",
    "enableWhiteGlove",
    "preprovisioningAllowed",
    "roleScopeTagIds",
    "managementServiceAppId",
];
const OOBE_KEYS: &[&str] = &[
    "@odata.type",
    "privacySettingsHidden",
    "eulaHidden",
    "userType",
    "deviceUsageType",
    "keyboardSelectionPageSkipped",
    "escapeLinkHidden",
];
const GROUP_KEYS: &[&str] = &[
    "displayName",
    "description",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "groupTypes",
    "membershipRule",
    "membershipRuleProcessingState",
    "members@odata.bind",
    "owners@odata.bind",
    "isAssignableToRole",
    "visibility",
];

fn unknown(obj: &Map<String, Value>, allowed: &[&str]) -> Option<String> {
    obj.keys()
        .find(|k| !allowed.contains(&k.as_str()))
        .map(|k| k.to_string())
}

fn bad_property(what: &str, k: &str) -> (u16, Value) {
    graph_error(
        400,
        "BadRequest",
        &format!("The property '{k}' does not exist on type '{what}'. Make sure to only use property names that are defined by the type."),
    )
}

impl GraphStandIn {
    /// Starts a stand-in for tenant `tenant_id` whose app is `client_id`.
    pub async fn start(tenant_id: &str, client_id: &str) -> GraphStandIn {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            ..State::default()
        }));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, st) = (acceptor.clone(), st.clone());
                conns.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let st = st.clone();
                            async move {
                                let method = req.method().to_string();
                                let pq = req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default();
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string();
                                let ct = req
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let (status, v, retry) =
                                    handle(&st, port, &method, &pq, &auth, &ct, &body);
                                let bytes = if v.is_null() {
                                    bytes::Bytes::new()
                                } else {
                                    bytes::Bytes::from(v.to_string())
                                };
                                let mut r = hyper::Response::new(Full::new(bytes));
                                *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                                r.headers_mut().insert(
                                    "content-type",
                                    hyper::header::HeaderValue::from_static("application/json"),
                                );
                                if retry {
                                    r.headers_mut().insert(
                                        "retry-after",
                                        hyper::header::HeaderValue::from_static("1"),
                                    );
                                }
                                Ok::<_, std::convert::Infallible>(r)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        GraphStandIn {
            port,
            ca_pem: ca.pem(),
            state,
            task: Some(task),
        }
    }

    /// `https://localhost:<port>` (login and Graph base URL alike).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Writes the CA certificate to `dir/graph-ca.pem` and returns the path.
    pub fn write_ca(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let p = dir.join("graph-ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }

    pub fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Registers a certificate (DER) on the app.
    pub fn register_cert(&self, der: &[u8]) {
        self.st().certs.push(der.to_vec());
    }

    /// Revokes every credential of the app and every token issued.
    pub fn revoke(&self) {
        let mut s = self.st();
        s.certs.clear();
        s.secret = None;
        s.tokens.clear();
    }

    /// An Autopilot device registered elsewhere (by an OEM): returns its id.
    pub fn register_oem(&self, serial: &str, group_tag: &str) -> String {
        let id = guid();
        let aad = guid();
        let obj = guid();
        let mut s = self.st();
        s.identities
            .insert(id.clone(), identity(&id, serial, group_tag, "", &aad));
        s.devices.insert(
            obj.clone(),
            json!({"id": obj, "deviceId": aad, "displayName": serial}),
        );
        id
    }

    /// The identity with this serial number.
    pub fn identity_by_serial(&self, serial: &str) -> Option<Value> {
        self.st()
            .identities
            .values()
            .find(|v| v["serialNumber"].as_str() == Some(serial))
            .cloned()
    }
}

impl Drop for GraphStandIn {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn identity(id: &str, serial: &str, group_tag: &str, upn: &str, aad: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.windowsAutopilotDeviceIdentity",
        "id": id, "groupTag": group_tag, "purchaseOrderIdentifier": "", "serialNumber": serial,
        "productKey": "", "manufacturer": "Contoso", "model": "Laptop 1",
        "enrollmentState": "notContacted", "lastContactedDateTime": "0001-01-01T00:00:00Z",
        "addressableUserName": "", "userPrincipalName": upn, "resourceName": "", "skuNumber": "",
        "systemFamily": "", "azureActiveDirectoryDeviceId": aad, "managedDeviceId": "00000000-0000-0000-0000-000000000000",
        "displayName": ""
    })
}

fn handle(
    st: &Mutex<State>,
    port: u16,
    method: &str,
    pq: &str,
    auth: &str,
    ct: &str,
    body: &[u8],
) -> (u16, Value, bool) {
    let mut s = st.lock().unwrap();
    let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
    let (status, v, retry) = if path.ends_with("/oauth2/v2.0/token") {
        let (st, v) = token(&mut s, port, method, path, ct, body);
        (st, v, false)
    } else {
        graph(&mut s, port, method, path, query, auth, body)
    };
    if status >= 400 && status != 429 {
        s.refusals.push(format!("{method} {pq}: {status} {v}"));
    }
    if (200..300).contains(&status) && method != "GET" && !path.ends_with("/token") {
        s.writes.push((method.to_string(), path.to_string()));
    }
    s.log.push((method.to_string(), pq.to_string(), status));
    (status, v, retry)
}

fn token(
    s: &mut State,
    port: u16,
    method: &str,
    path: &str,
    ct: &str,
    body: &[u8],
) -> (u16, Value) {
    if method != "POST" || !ct.starts_with("application/x-www-form-urlencoded") {
        return entra_error(400, "invalid_request", "AADSTS900144: POST a form.");
    }
    let tenant = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if tenant != s.tenant_id {
        return entra_error(
            400,
            "invalid_tenant",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    let f = form(body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "client_credentials" {
        return entra_error(400, "unsupported_grant_type", "AADSTS70003: grant_type");
    }
    if get("scope") != format!("https://localhost:{port}/.default") {
        return entra_error(
            400,
            "invalid_scope",
            &format!(
                "AADSTS1002012: The provided value for scope {} is not valid.",
                get("scope")
            ),
        );
    }
    if get("client_id") != s.client_id {
        return entra_error(
            400,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    }
    let n = now();
    if let Some(secret) = f.get("client_secret") {
        if s.secret.as_deref() != Some(secret.as_str()) {
            return entra_error(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            );
        }
    } else {
        if get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        {
            return entra_error(400, "invalid_request", "AADSTS50027: client_assertion_type");
        }
        let jwt = get("client_assertion");
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return entra_error(400, "invalid_request", "AADSTS50027: malformed JWT");
        }
        let (Some(h), Some(c), Some(sig)) = (b64url(parts[0]), b64url(parts[1]), b64url(parts[2]))
        else {
            return entra_error(400, "invalid_request", "AADSTS50027: not base64url");
        };
        let h: Value = serde_json::from_slice(&h).unwrap_or_default();
        let c: Value = serde_json::from_slice(&c).unwrap_or_default();
        let alg = match h["alg"].as_str() {
            Some("RS256") => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            Some("PS256") => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
            _ => {
                return entra_error(
                    400,
                    "invalid_request",
                    "AADSTS5002730: alg must be RS256 or PS256",
                )
            }
        };
        let cert = s.certs.iter().find(|der| {
            let s256 = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref());
            let s1 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
                    .as_ref(),
            );
            h["x5t#S256"].as_str() == Some(s256.as_str()) || h["x5t"].as_str() == Some(s1.as_str())
        });
        let Some(cert) = cert else {
            return entra_error(401, "invalid_client", &format!("AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{}']", h["x5t#S256"]));
        };
        let (_, x) = x509_parser::parse_x509_certificate(cert).unwrap();
        let pk = aws_lc_rs::signature::UnparsedPublicKey::new(
            alg,
            x.public_key().subject_public_key.data.as_ref(),
        );
        let input = format!("{}.{}", parts[0], parts[1]);
        if pk.verify(input.as_bytes(), &sig).is_err() {
            return entra_error(
                401,
                "invalid_client",
                "AADSTS700027: Client assertion failed signature validation.",
            );
        }
        let aud = format!("https://localhost:{port}/{}/oauth2/v2.0/token", s.tenant_id);
        if c["aud"].as_str() != Some(aud.as_str()) {
            return entra_error(401, "invalid_client", &format!("AADSTS700212: No matching federated identity record found for presented assertion audience '{}'.", c["aud"]));
        }
        if c["iss"].as_str() != Some(s.client_id.as_str())
            || c["sub"].as_str() != Some(s.client_id.as_str())
        {
            return entra_error(
                401,
                "invalid_client",
                "AADSTS700023: iss and sub must be the client id.",
            );
        }
        let (exp, nbf) = (
            c["exp"].as_i64().unwrap_or(0),
            c["nbf"].as_i64().unwrap_or(i64::MAX),
        );
        if exp <= n {
            return entra_error(
                401,
                "invalid_client",
                "AADSTS700024: Client assertion is not within its valid time range.",
            );
        }
        if nbf > n + 300 || exp > n + 3600 {
            return entra_error(
                401,
                "invalid_client",
                "AADSTS700024: Client assertion is not within its valid time range.",
            );
        }
        let jti = c["jti"].as_str().unwrap_or("").to_string();
        if jti.is_empty() || !s.jtis.insert(jti) {
            return entra_error(
                401,
                "invalid_client",
                "AADSTS700025: jti missing or replayed.",
            );
        }
    }
    let t = winmdm::clock::random_hex(24);
    s.tokens.insert(t.clone(), n + 3599);
    s.tokens_issued += 1;
    (
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": t}),
    )
}

fn page(items: Vec<Value>, port: u16, path: &str, query: &str) -> Value {
    let mut skip = 0usize;
    let mut rest = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("$skiptoken", v)) => skip = v.parse().unwrap_or(0),
            _ => rest.push(p.to_string()),
        }
    }
    let end = (skip + PAGE_SIZE).min(items.len());
    let value: Vec<Value> = items.get(skip..end).map(|s| s.to_vec()).unwrap_or_default();
    let mut v = json!({"@odata.context": format!("https://localhost:{port}/v1.0/$metadata#collection"), "value": value});
    if end < items.len() {
        rest.push(format!("$skiptoken={end}"));
        v["@odata.nextLink"] = format!("https://localhost:{port}{path}?{}", rest.join("&")).into();
    }
    v
}

fn graph(
    s: &mut State,
    port: u16,
    method: &str,
    path: &str,
    query: &str,
    auth: &str,
    body: &[u8],
) -> (u16, Value, bool) {
    let n = now();
    let ok_token = auth
        .strip_prefix("Bearer ")
        .and_then(|t| s.tokens.get(t))
        .is_some_and(|exp| *exp > n);
    if !ok_token {
        let (st, v) = graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token is empty, invalid or expired.",
        );
        return (st, v, false);
    }
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        s.throttled += 1;
        let (st, v) = graph_error(
            429,
            "TooManyRequests",
            "Too many requests. Please retry after the time in the Retry-After header.",
        );
        return (st, v, true);
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                let (st, v) =
                    graph_error(400, "BadRequest", "Unable to read JSON request payload.");
                return (st, v, false);
            }
        }
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (st, v) = route(s, port, method, &segs, path, query, body);
    (st, v, false)
}

fn route(
    s: &mut State,
    port: u16,
    method: &str,
    segs: &[&str],
    path: &str,
    query: &str,
    body: Value,
) -> (u16, Value) {
    let q = pct_decode(query);
    match (method, segs) {
        ("GET", ["v1.0", "organization"]) => (
            200,
            json!({"value": [{"id": s.tenant_id, "displayName": "Contoso Stand-in", "verifiedDomains": [{"name": "contoso.example", "isDefault": true}]}]}),
        ),
        ("POST", ["v1.0", "deviceManagement", "importedWindowsAutopilotDeviceIdentities"]) => {
            let Some(o) = body.as_object() else {
                return graph_error(400, "BadRequest", "object expected");
            };
            if o.get("@odata.type").and_then(Value::as_str)
                != Some("#microsoft.graph.importedWindowsAutopilotDeviceIdentity")
            {
                return graph_error(400, "BadRequest", "A type named '' could not be resolved by the model. When a model is available, each type name must resolve to a valid type: @odata.type is required.");
            }
            if let Some(k) = unknown(o, IMPORTED_KEYS) {
                return bad_property("microsoft.graph.importedWindowsAutopilotDeviceIdentity", &k);
            }
            if o.get("serialNumber")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return graph_error(400, "BadRequest", "serialNumber is required");
            }
            let hw = o
                .get("hardwareIdentifier")
                .and_then(Value::as_str)
                .unwrap_or("");
            if base64::engine::general_purpose::STANDARD
                .decode(hw)
                .is_err()
                || hw.is_empty()
            {
                return graph_error(
                    400,
                    "BadRequest",
                    "hardwareIdentifier: invalid Edm.Binary value",
                );
            }
            let id = guid();
            let mut rec = body.clone();
            rec["id"] = id.clone().into();
            rec["importId"] = guid().into();
            rec["state"] = json!({"@odata.type": "microsoft.graph.importedWindowsAutopilotDeviceIdentityState",
                "deviceImportStatus": "pending", "deviceRegistrationId": "", "deviceErrorCode": 0, "deviceErrorName": ""});
            s.imported.insert(id, rec.clone());
            (201, rec)
        }
        ("GET", ["v1.0", "deviceManagement", "importedWindowsAutopilotDeviceIdentities", id]) => {
            let Some(mut rec) = s.imported.get(*id).cloned() else {
                return graph_error(404, "ResourceNotFound", "not found");
            };
            if rec["state"]["deviceImportStatus"] == "pending" {
                // Microsoft processes the import: the hash decides.
                let hw = rec["hardwareIdentifier"].as_str().unwrap_or("").to_string();
                if s.hashes.contains_key(&hw) {
                    rec["state"]["deviceImportStatus"] = "error".into();
                    rec["state"]["deviceErrorCode"] = 806.into();
                    rec["state"]["deviceErrorName"] = "ZtdDeviceAlreadyAssigned".into();
                } else {
                    let reg = guid();
                    let serial = rec["serialNumber"].as_str().unwrap_or("").to_string();
                    let tag = rec["groupTag"].as_str().unwrap_or("").to_string();
                    let upn = rec["assignedUserPrincipalName"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let aad = guid();
                    let obj = guid();
                    s.identities
                        .insert(reg.clone(), identity(&reg, &serial, &tag, &upn, &aad));
                    s.devices.insert(
                        obj.clone(),
                        json!({"id": obj, "deviceId": aad, "displayName": serial}),
                    );
                    s.hashes.insert(hw, reg.clone());
                    rec["state"]["deviceImportStatus"] = "complete".into();
                    rec["state"]["deviceRegistrationId"] = reg.into();
                }
                s.imported.insert(id.to_string(), rec.clone());
            }
            (200, rec)
        }
        (
            "DELETE",
            ["v1.0", "deviceManagement", "importedWindowsAutopilotDeviceIdentities", id],
        ) => match s.imported.remove(*id) {
            Some(_) => (200, Value::Null),
            None => graph_error(404, "ResourceNotFound", "not found"),
        },
        ("GET", ["v1.0", "deviceManagement", "windowsAutopilotDeviceIdentities"]) => {
            let filter = q
                .split('&')
                .find_map(|p| p.strip_prefix("$filter="))
                .map(str::to_string);
            let items: Vec<Value> = s
                .identities
                .values()
                .filter(|v| match &filter {
                    None => true,
                    Some(f) => {
                        let want = f
                            .strip_prefix("contains(serialNumber,'")
                            .and_then(|r| r.strip_suffix("')"))
                            .unwrap_or("\u{0}");
                        v["serialNumber"].as_str().unwrap_or("").contains(want)
                    }
                })
                .cloned()
                .collect();
            if filter
                .as_deref()
                .is_some_and(|f| !f.starts_with("contains(serialNumber,'"))
            {
                return graph_error(400, "BadRequest", "Invalid filter clause");
            }
            (200, page(items, port, path, query))
        }
        ("GET", ["v1.0", "deviceManagement", "windowsAutopilotDeviceIdentities", id]) => {
            match s.identities.get(*id) {
                Some(v) => (200, v.clone()),
                None => graph_error(404, "ResourceNotFound", "not found"),
            }
        }
        (
            "POST",
            ["v1.0", "deviceManagement", "windowsAutopilotDeviceIdentities", id, "updateDeviceProperties"],
        ) => {
            let Some(o) = body.as_object().cloned() else {
                return graph_error(400, "BadRequest", "object expected");
            };
            if let Some(k) = unknown(&o, UPDATE_KEYS) {
                return graph_error(400, "BadRequest", &format!("The parameter '{k}' in the request payload is not a valid parameter for the operation 'updateDeviceProperties'."));
            }
            let Some(rec) = s.identities.get_mut(*id) else {
                return graph_error(404, "ResourceNotFound", "not found");
            };
            for (k, v) in o {
                rec[k] = v;
            }
            (204, Value::Null)
        }
        ("DELETE", ["v1.0", "deviceManagement", "windowsAutopilotDeviceIdentities", id]) => {
            match s.identities.remove(*id) {
                Some(_) => {
                    s.hashes.retain(|_, v| v != id);
                    (200, Value::Null)
                }
                None => graph_error(404, "ResourceNotFound", "not found"),
            }
        }
        (_, ["v1.0", "deviceManagement", "windowsAutopilotDeploymentProfiles", ..]) => graph_error(
            400,
            "BadRequest",
            "Resource not found for the segment 'windowsAutopilotDeploymentProfiles'. (beta only)",
        ),
        ("POST", ["beta", "deviceManagement", "windowsAutopilotDeploymentProfiles"])
        | ("PATCH", ["beta", "deviceManagement", "windowsAutopilotDeploymentProfiles", _]) => {
            let Some(o) = body.as_object() else {
                return graph_error(400, "BadRequest", "object expected");
            };
            let ty = o.get("@odata.type").and_then(Value::as_str);
            if !matches!(
                ty,
                Some(
                    "#microsoft.graph.azureADWindowsAutopilotDeploymentProfile"
                        | "#microsoft.graph.activeDirectoryWindowsAutopilotDeploymentProfile"
                )
            ) {
                return graph_error(400, "BadRequest", "@odata.type of a windowsAutopilotDeploymentProfile is required (abstract type).");
            }
            if let Some(k) = unknown(o, PROFILE_KEYS) {
                return bad_property(
                    "microsoft.graph.azureADWindowsAutopilotDeploymentProfile",
                    &k,
                );
            }
            if let Some(oobe) = o
                .get("outOfBoxExperienceSetting")
                .and_then(Value::as_object)
            {
                if let Some(k) = unknown(oobe, OOBE_KEYS) {
                    return bad_property("microsoft.graph.outOfBoxExperienceSetting", &k);
                }
                if !matches!(
                    oobe.get("userType").and_then(Value::as_str),
                    Some("administrator" | "standard")
                ) {
                    return graph_error(400, "BadRequest", "userType: administrator or standard");
                }
                if !matches!(
                    oobe.get("deviceUsageType").and_then(Value::as_str),
                    Some("singleUser" | "shared")
                ) {
                    return graph_error(400, "BadRequest", "deviceUsageType: singleUser or shared");
                }
            }
            if !o
                .get("displayName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty() && n.len() <= 200)
            {
                return graph_error(
                    400,
                    "BadRequest",
                    "displayName is required (at most 200 characters)",
                );
            }
            if method == "POST" {
                let id = guid();
                let mut rec = body.clone();
                rec["id"] = id.clone().into();
                s.profiles.insert(id, rec.clone());
                (201, rec)
            } else {
                let id = segs[3];
                let Some(rec) = s.profiles.get_mut(id) else {
                    return graph_error(404, "ResourceNotFound", "not found");
                };
                for (k, v) in o {
                    rec[k] = v.clone();
                }
                (200, rec.clone())
            }
        }
        ("DELETE", ["beta", "deviceManagement", "windowsAutopilotDeploymentProfiles", id]) => {
            match s.profiles.remove(*id) {
                Some(_) => (204, Value::Null),
                None => graph_error(404, "ResourceNotFound", "not found"),
            }
        }
        (
            "POST",
            ["beta", "deviceManagement", "windowsAutopilotDeploymentProfiles", id, "assignments"],
        ) => {
            if !s.profiles.contains_key(*id) {
                return graph_error(404, "ResourceNotFound", "profile not found");
            }
            if body["@odata.type"] != "#microsoft.graph.windowsAutopilotDeploymentProfileAssignment"
            {
                return graph_error(
                    400,
                    "BadRequest",
                    "@odata.type windowsAutopilotDeploymentProfileAssignment required",
                );
            }
            if let Some(k) = body
                .as_object()
                .and_then(|o| unknown(o, &["@odata.type", "id", "target", "source", "sourceId"]))
            {
                return bad_property(
                    "microsoft.graph.windowsAutopilotDeploymentProfileAssignment",
                    &k,
                );
            }
            let t = &body["target"];
            if t["@odata.type"] != "#microsoft.graph.groupAssignmentTarget"
                && t["@odata.type"] != "#microsoft.graph.allDevicesAssignmentTarget"
            {
                return graph_error(
                    400,
                    "BadRequest",
                    "target: @odata.type groupAssignmentTarget required",
                );
            }
            if t["@odata.type"] == "#microsoft.graph.allDevicesAssignmentTarget" {
                if s.assignments.iter().any(|(_, a)| {
                    a["target"]["@odata.type"] == "#microsoft.graph.allDevicesAssignmentTarget"
                }) {
                    return graph_error(
                        400,
                        "BadRequest",
                        "Only one profile can be assigned to all devices.",
                    );
                }
                let mut rec = body.clone();
                rec["id"] = format!("{id}_allDevices").into();
                s.assignments.push((id.to_string(), rec.clone()));
                return (201, rec);
            }
            let gid = t["groupId"].as_str().unwrap_or("");
            if !s.groups.contains_key(gid) {
                return graph_error(400, "BadRequest", &format!("group {gid} does not exist"));
            }
            let mut rec = body.clone();
            rec["id"] = format!("{id}_{gid}").into();
            s.assignments.push((id.to_string(), rec.clone()));
            (201, rec)
        }
        (
            "DELETE",
            ["beta", "deviceManagement", "windowsAutopilotDeploymentProfiles", id, "assignments", aid],
        ) => {
            let before = s.assignments.len();
            s.assignments.retain(|(p, a)| !(p == id && a["id"] == *aid));
            if s.assignments.len() < before {
                (204, Value::Null)
            } else {
                graph_error(404, "ResourceNotFound", "not found")
            }
        }
        ("POST", ["v1.0", "groups"]) => {
            let Some(o) = body.as_object() else {
                return graph_error(400, "BadRequest", "object expected");
            };
            if let Some(k) = unknown(o, GROUP_KEYS) {
                return bad_property("microsoft.graph.group", &k);
            }
            for k in ["displayName", "mailNickname"] {
                if o.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                    return graph_error(
                        400,
                        "Request_BadRequest",
                        &format!("A value is required for property '{k}' of resource 'Group'."),
                    );
                }
            }
            if o.get("mailEnabled") != Some(&json!(false))
                || o.get("securityEnabled") != Some(&json!(true))
            {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    "security groups: mailEnabled false, securityEnabled true",
                );
            }
            let nick = o["mailNickname"].as_str().unwrap_or("");
            if nick.len() > 64 || nick.chars().any(|c| "@()\\[]\";:<>, ".contains(c)) {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    "Invalid value specified for property 'mailNickname' of resource 'Group'.",
                );
            }
            let dynamic = o
                .get("groupTypes")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|t| t == "DynamicMembership"));
            if dynamic != o.contains_key("membershipRule") {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    "membershipRule goes with groupTypes DynamicMembership",
                );
            }
            if dynamic
                && !matches!(
                    o.get("membershipRuleProcessingState")
                        .and_then(Value::as_str),
                    Some("On" | "Paused")
                )
            {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    "membershipRuleProcessingState: On or Paused",
                );
            }
            let mut members = Vec::new();
            for b in o
                .get("members@odata.bind")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let url = b.as_str().unwrap_or("");
                let prefix = format!("https://localhost:{port}/v1.0/directoryObjects/");
                match url.strip_prefix(&prefix) {
                    Some(id) if s.devices.contains_key(id) => members.push(id.to_string()),
                    _ => {
                        return graph_error(
                            400,
                            "Request_BadRequest",
                            &format!("Invalid object identifier '{url}'."),
                        )
                    }
                }
            }
            let id = guid();
            let mut rec = body.clone();
            rec["id"] = id.clone().into();
            rec["members"] = json!(members);
            s.groups.insert(id, rec.clone());
            (201, rec)
        }
        ("POST", ["v1.0", "groups", id, "members", "$ref"]) => {
            let Some(o) = body.as_object() else {
                return graph_error(400, "BadRequest", "object expected");
            };
            if let Some(k) = unknown(o, &["@odata.id"]) {
                return bad_property("microsoft.graph.directoryObject reference", &k);
            }
            let url = o.get("@odata.id").and_then(Value::as_str).unwrap_or("");
            let prefix = format!("https://localhost:{port}/v1.0/directoryObjects/");
            let Some(obj) = url
                .strip_prefix(&prefix)
                .filter(|o| s.devices.contains_key(*o))
            else {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    &format!("Invalid object identifier '{url}'."),
                );
            };
            let obj = obj.to_string();
            let Some(g) = s.groups.get_mut(*id) else {
                return graph_error(404, "Request_ResourceNotFound", "not found");
            };
            if g["groupTypes"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == "DynamicMembership"))
            {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    "Members of a dynamic membership group cannot be changed.",
                );
            }
            let members = g["members"].as_array_mut().unwrap();
            if members.iter().any(|m| m == obj.as_str()) {
                return graph_error(400, "Request_BadRequest", "One or more added object references already exist for the following modified properties: 'members'.");
            }
            members.push(obj.into());
            (204, Value::Null)
        }
        ("DELETE", ["v1.0", "groups", id]) => match s.groups.remove(*id) {
            Some(_) => (204, Value::Null),
            None => graph_error(404, "Request_ResourceNotFound", "not found"),
        },
        ("GET", ["v1.0", "devices"]) => {
            let want = q
                .split('&')
                .find_map(|p| p.strip_prefix("$filter=deviceId eq '"))
                .and_then(|r| r.strip_suffix('\''))
                .map(str::to_string);
            let Some(want) = want else {
                return graph_error(400, "BadRequest", "filter by deviceId");
            };
            let items: Vec<Value> = s
                .devices
                .values()
                .filter(|d| d["deviceId"] == want.as_str())
                .cloned()
                .collect();
            (200, page(items, port, path, query))
        }
        _ => graph_error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                segs.last().unwrap_or(&"")
            ),
        ),
    }
}
