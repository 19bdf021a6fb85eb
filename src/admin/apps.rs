//! Thin JSON handlers of the app catalog (`/api/v1/apps`), over [`crate::service::apps`].
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/apps?name=&command_line=&timeout_minutes=&retry_count=&retry_interval_minutes=` body: the MSI, or the MSIX/APPX package or bundle (`application/octet-stream`, streamed; told apart by content) | 201 app (MSI: ProductCode, ProductVersion, name read from it; MSIX: Identity Name/Publisher/Version and family name from the manifest; SHA-256 computed); 400 neither, or a manifest over 1 MiB; 409 quota; 413 larger than `--app-max-mb` |
//! | POST | `/api/v1/apps` `{"kind","name","url","sha256","product_code"?,"product_version"?,"package_family_name"? \| "package_name"+"publisher"}` | 201 app registered by external URL |
//! | GET | `/api/v1/apps?limit=&cursor=` | 200 `{"apps": [...], "next"}` |
//! | GET | `/api/v1/apps/{app_id}` | 200 app + `assignments`; 404 |
//! | PUT | `/api/v1/apps/{app_id}/content` body: a newer MSI of the same product, or a newer MSIX of the same package family | 200 app (revision bumped; assigned devices get the new version) + `jobs`; 400; 409 not newer |
//! | DELETE | `/api/v1/apps/{app_id}` | 200 `{"jobs"}` (assigned devices uninstall it); 404 |
//! | POST | `/api/v1/apps/{app_id}/assignments` `{"group_id","scope"?: "device"\|"user","intent"?: "required"\|"uninstall"}` | 201 (200 if it existed) `{"jobs"}`; 404 |
//! | DELETE | `/api/v1/apps/{app_id}/assignments/{group_id}` | 200 `{"jobs"}` (devices leaving uninstall it); 404 |
//! | GET | `/api/v1/apps/{app_id}/devices?limit=&cursor=` | 200 `{"devices": [state...], "next"}` |
//! | GET | `/api/v1/devices/{device_id}/apps` | 200 `{"apps": [state...]}`; 404 |
//! | POST | `/api/v1/esp` `{"name","apps"?,"profiles"?,"timeout_minutes"?,"block"?,"allow_reset"?,"allow_retry"?,"allow_continue"?,"allow_collect_logs"?,"custom_error_text"?,"skip_device_page"?,"skip_user_page"?}` | 201 ESP; 400; 404 unknown app or profile |
//! | GET | `/api/v1/esp?limit=&cursor=` | 200 `{"esp": [...], "next"}` |
//! | GET | `/api/v1/esp/{esp_id}` | 200 ESP + `groups`; 404 |
//! | PUT | `/api/v1/esp/{esp_id}` (the body of `POST /api/v1/esp`) | 200 ESP (group assignments kept); 400; 404 |
//! | DELETE | `/api/v1/esp/{esp_id}` | 204; 404 |
//! | POST | `/api/v1/esp/{esp_id}/assignments` `{"group_id"}` | 201 (200 if it was); 404 |
//! | DELETE | `/api/v1/esp/{esp_id}/assignments/{group_id}` | 204; 404 |
//! | GET | `/api/v1/devices/{device_id}/esp` | 200 the device's ESP progress (`items`: apps, `policies`: profiles, each with its state); 404 none |

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode};

use super::{bad, json, json_body, not_found, page_json, page_query, percent_decode, ApiError};
use crate::app::App;
use crate::apps::{ExternalApp, InstallOptions, UploadMeta};
use crate::http::body::{BodyTimeout, Resp};
use crate::jobs;
use crate::service::apps::{self as svc, AssignInput, UploadFailure};
use crate::service::Actor;

/// A matched app route.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ep<'a> {
    Create,
    List,
    Get(&'a str),
    Delete(&'a str),
    Content(&'a str),
    Assign(&'a str),
    Unassign(&'a str, &'a str),
    Devices(&'a str),
    CreateEsp,
    ListEsp,
    GetEsp(&'a str),
    UpdateEsp(&'a str),
    DeleteEsp(&'a str),
    AssignEsp(&'a str),
    UnassignEsp(&'a str, &'a str),
}

/// Routes under `/api/v1/apps`.
pub(super) fn endpoint<'a>(segs: &[&'a str], method: &Method) -> Result<Ep<'a>, ApiError> {
    Ok(match (segs, method.clone()) {
        (["apps"], Method::POST) => Ep::Create,
        (["apps"], Method::GET) => Ep::List,
        (["apps", id], Method::GET) => Ep::Get(id),
        (["apps", id], Method::DELETE) => Ep::Delete(id),
        (["apps", id, "content"], Method::PUT) => Ep::Content(id),
        (["apps", id, "assignments"], Method::POST) => Ep::Assign(id),
        (["apps", id, "assignments", g], Method::DELETE) => Ep::Unassign(id, g),
        (["apps", id, "devices"], Method::GET) => Ep::Devices(id),
        (["esp"], Method::POST) => Ep::CreateEsp,
        (["esp"], Method::GET) => Ep::ListEsp,
        (["esp", id], Method::GET) => Ep::GetEsp(id),
        (["esp", id], Method::PUT) => Ep::UpdateEsp(id),
        (["esp", id], Method::DELETE) => Ep::DeleteEsp(id),
        (["esp", id, "assignments"], Method::POST) => Ep::AssignEsp(id),
        (["esp", id, "assignments", g], Method::DELETE) => Ep::UnassignEsp(id, g),
        (
            ["apps"]
            | ["apps", _]
            | ["apps", _, "content"]
            | ["apps", _, "assignments"]
            | ["apps", _, "assignments", _]
            | ["apps", _, "devices"]
            | ["esp"]
            | ["esp", _]
            | ["esp", _, "assignments"]
            | ["esp", _, "assignments", _],
            _,
        ) => return Err(ApiError::MethodNotAllowed),
        _ => return Err(not_found("route")),
    })
}

fn jobs_json(jobs: &[jobs::Job]) -> serde_json::Value {
    serde_json::Value::Array(jobs.iter().map(jobs::view).collect())
}

pub(super) async fn handle(
    app: &Arc<App>,
    actor: &Actor,
    ep: Ep<'_>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    match ep {
        Ep::Create => {
            let ct = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if ct.starts_with("application/json") {
                let e: ExternalApp = json_body(req).await?;
                return Ok(json(
                    StatusCode::CREATED,
                    &svc::register(app, actor, e).await?,
                ));
            }
            let meta = upload_meta(&query)?;
            let rec = upload(app, actor, req, meta, None).await?;
            let mut v = serde_json::to_value(&rec.value).unwrap_or_default();
            v["jobs"] = jobs_json(&rec.jobs);
            Ok(json(StatusCode::CREATED, &v))
        }
        Ep::Content(id) => {
            let meta = upload_meta(&query)?;
            let rec = upload(app, actor, req, meta, Some(id.to_string())).await?;
            let mut v = serde_json::to_value(&rec.value).unwrap_or_default();
            v["jobs"] = jobs_json(&rec.jobs);
            Ok(json(StatusCode::OK, &v))
        }
        Ep::List => {
            let (limit, cursor) = page_query(&query)?;
            Ok(page_json("apps", &svc::list(app, cursor, limit).await?))
        }
        Ep::Get(id) => Ok(json(StatusCode::OK, &svc::get(app, id).await?)),
        Ep::Delete(id) => {
            let jobs = svc::delete(app, actor, id).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"jobs": jobs_json(&jobs)}),
            ))
        }
        Ep::Assign(id) => {
            let input: AssignInput = json_body(req).await?;
            let ch = svc::assign(app, actor, id, input.clone()).await?;
            let out = serde_json::json!({"app_id": id, "group_id": input.group_id, "scope": input.scope, "intent": input.intent, "jobs": jobs_json(&ch.jobs)});
            Ok(json(
                if ch.value {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &out,
            ))
        }
        Ep::Unassign(id, g) => {
            let jobs = svc::unassign(app, actor, id, g).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"jobs": jobs_json(&jobs)}),
            ))
        }
        Ep::CreateEsp => {
            let i: crate::apps::esp::EspInput = json_body(req).await?;
            Ok(json(
                StatusCode::CREATED,
                &svc::create_esp(app, actor, i).await?,
            ))
        }
        Ep::ListEsp => {
            let (limit, cursor) = page_query(&query)?;
            Ok(page_json("esp", &svc::list_esp(app, cursor, limit).await?))
        }
        Ep::GetEsp(id) => Ok(json(StatusCode::OK, &svc::get_esp(app, id).await?)),
        Ep::UpdateEsp(id) => {
            let i: crate::apps::esp::EspInput = json_body(req).await?;
            Ok(json(
                StatusCode::OK,
                &svc::update_esp(app, actor, id, i).await?,
            ))
        }
        Ep::DeleteEsp(id) => {
            svc::delete_esp(app, actor, id).await?;
            Ok(super::no_content())
        }
        Ep::AssignEsp(id) => {
            let b: GroupRef = json_body(req).await?;
            let created = svc::assign_esp(app, actor, id, &b.group_id).await?;
            Ok(json(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &serde_json::json!({"esp_id": id, "group_id": b.group_id}),
            ))
        }
        Ep::UnassignEsp(id, g) => {
            svc::unassign_esp(app, actor, id, g).await?;
            Ok(super::no_content())
        }
        Ep::Devices(id) => {
            let (limit, cursor) = page_query(&query)?;
            Ok(page_json(
                "devices",
                &svc::devices(app, id, cursor, limit).await?,
            ))
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupRef {
    group_id: String,
}

/// `GET /api/v1/devices/{device_id}/esp`.
pub(super) async fn device_esp(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    Ok(json(StatusCode::OK, &svc::device_esp(app, id).await?))
}

/// `GET /api/v1/devices/{device_id}/apps`.
pub(super) async fn device_apps(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    let apps = svc::device_apps(app, id).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({"apps": apps})))
}

/// The query of an upload: `name` and the install options.
fn upload_meta(query: &str) -> Result<UploadMeta, ApiError> {
    let mut m = UploadMeta::default();
    let num = |k: &str, v: &str| -> Result<u32, ApiError> {
        v.parse().map_err(|_| bad(format!("{k} must be a number")))
    };
    let mut o = InstallOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(&v.replace('+', " "))?;
        match k {
            "name" => m.name = Some(v),
            "command_line" => o.command_line = Some(v),
            "timeout_minutes" => o.timeout_minutes = Some(num(k, &v)?),
            "retry_count" => o.retry_count = Some(num(k, &v)?),
            "retry_interval_minutes" => o.retry_interval_minutes = Some(num(k, &v)?),
            other => return Err(bad(format!("unknown query parameter {other:?}"))),
        }
    }
    m.options = o;
    Ok(m)
}

fn upload_err(e: UploadFailure) -> ApiError {
    match e {
        UploadFailure::TooLarge(limit) => ApiError::TooLarge {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        },
        UploadFailure::Service(s) => ApiError::Service(s),
    }
}

/// Streams the request body into the store (each frame within the body timeout).
async fn upload(
    app: &Arc<App>,
    actor: &Actor,
    req: Request<Incoming>,
    meta: UploadMeta,
    replace: Option<String>,
) -> Result<svc::Changed<crate::apps::AppRecord>, ApiError> {
    let idle = BodyTimeout::of(&req);
    let mut body = req.into_body();
    let mut up = svc::begin_upload(app, actor, replace.as_deref())
        .await
        .map_err(upload_err)?;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                up.abort().await;
                return Err(bad("body not received in time"));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                up.abort().await;
                return Err(bad(format!("reading the body: {e}")));
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if let Err(e) = up.write(&data).await {
                up.abort().await;
                return Err(upload_err(e));
            }
        }
    }
    up.finish(actor, meta, replace).await.map_err(upload_err)
}
