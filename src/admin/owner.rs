//! `PUT /api/v1/devices/{device_id}/owner {"upn"}`: an admin hands a device to another user on
//! purpose ([`crate::owner`]). Enrollment never does this by itself: another principal enrolling
//! an owned DeviceID is refused with `s:Authorization`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::{audit, blocking, json, json_body, tokens, validate_upn, ApiError};
use crate::app::App;
use crate::http::routes::Resp;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOwner {
    upn: String,
}

/// Transfers the device to the user: its owner (the account's immutable id), UPN and bulk flag
/// follow the account; a bulk assignment is dropped. The device keeps its certificate, queue and
/// groups; from now on only the new owner may enroll this DeviceID again.
pub(super) async fn transfer(
    app: Arc<App>,
    id: String,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body: NewOwner = json_body(req).await?;
    let upn = validate_upn(&body.upn)?;
    let (dev, from) = blocking({
        let (app, id) = (app.clone(), id.clone());
        move || {
            let mut dev = app
                .store
                .get_device(&id)?
                .ok_or_else(|| ApiError::NotFound {
                    what: format!("device {id}"),
                })?;
            let user = super::enabled_user(&app, &upn, "no device can be handed")?;
            let from = (dev.upn.clone(), dev.owner.clone());
            crate::owner::transfer(&mut dev, &user);
            app.store.put_device(&dev)?;
            let _ = crate::groups::on_device_changed(&app, &id); // groups + profiles (errors logged)
            Ok((dev, from))
        }
    })
    .await?;
    tracing::info!(device_id = %id, from = ?from.0, to = ?dev.upn, "device handed to another user by an admin");
    audit(
        &app,
        "device.transfer",
        &id,
        serde_json::json!({
            "from_upn": from.0,
            "from_owner": from.1,
            "to_upn": dev.upn,
            "to_owner": dev.owner,
            "by": tokens::current_actor(),
        }),
    )
    .await;
    Ok(json(StatusCode::OK, &dev))
}
