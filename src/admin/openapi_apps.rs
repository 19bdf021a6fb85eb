//! OpenAPI paths and schemas of the app routes (merged into [`super::openapi`]).

use serde_json::{json, Value};

use super::openapi::{body, err, ok};

fn id(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn q(name: &str, ty: &str, d: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": d, "schema": {"type": ty}})
}

fn page() -> Vec<Value> {
    vec![
        json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": super::MAX_PAGE}}),
        json!({"name": "cursor", "in": "query", "required": false, "description": "`next` of the previous page.", "schema": {"type": "string"}}),
    ]
}

fn op(
    op_id: &str,
    summary: &str,
    params: Vec<Value>,
    req: Option<Value>,
    mut responses: Value,
) -> Value {
    if let Some(m) = responses.as_object_mut() {
        m.insert("401".into(), err("Missing or invalid bearer token."));
        m.insert(
            "403".into(),
            err("A read-only token (changes need an admin token)."),
        );
        m.insert("405".into(), err("Method not allowed on this path."));
        m.insert("500".into(), err("Internal error."));
    }
    let mut o = json!({"operationId": op_id, "summary": summary, "parameters": params, "responses": responses});
    if let Some(b) = req {
        o["requestBody"] = b;
    }
    o
}

fn upload_params() -> Vec<Value> {
    vec![
        q(
            "name",
            "string",
            "Display name (default: the MSI's ProductName, or the MSIX manifest's DisplayName or Identity Name).",
        ),
        q(
            "command_line",
            "string",
            "msiexec command line (default `/quiet`).",
        ),
        q(
            "timeout_minutes",
            "integer",
            "MsiInstallJob TimeOut (default 10).",
        ),
        q(
            "retry_count",
            "integer",
            "MsiInstallJob RetryCount (default 3).",
        ),
        q(
            "retry_interval_minutes",
            "integer",
            "MsiInstallJob RetryInterval (default 5).",
        ),
    ]
}

fn msi_or_json() -> Value {
    json!({
        "required": true,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}, "description": "The MSI, or the MSIX/APPX package or bundle (a ZIP with AppxManifest.xml or AppxMetadata/AppxBundleManifest.xml), streamed (at most --app-max-mb); the format is read from the content."},
            "application/json": {"schema": {"$ref": "#/components/schemas/ExternalApp"}}
        }
    })
}

/// The paths of `/api/v1/apps…` and `/api/v1/devices/{id}/apps`.
pub fn paths() -> Value {
    let a = || id("app_id");
    json!({
        "/api/v1/apps": {
            "post": op("createApp", "Upload an MSI (streamed; ProductCode/ProductVersion/ProductName read from it) or an MSIX/APPX package or bundle (Identity Name/Publisher/Version read from its manifest, package family name computed), SHA-256 computed; or register a package by HTTPS URL and SHA-256 (JSON)", upload_params(), Some(msi_or_json()), json!({
                "201": ok("The app.", "App"),
                "400": err("Neither a valid MSI nor a valid MSIX/APPX package (a manifest over 1 MiB decompressed, or a ZIP central directory over 16 MiB, is refused), or invalid JSON/fields."),
                "409": err("The app storage quota (--app-quota-mb) is used up."),
                "413": err("Larger than --app-max-mb.")})),
            "get": op("listApps", "List apps", page(), None, json!({"200": ok("A page of apps.", "AppPage"), "400": err("Invalid limit.")}))
        },
        "/api/v1/apps/{app_id}": {
            "get": op("getApp", "One app with its assignments", vec![a()], None, json!({"200": ok("The app.", "AppDetail"), "404": err("Unknown app.")})),
            "delete": op("deleteApp", "Delete an app and its content; assigned devices get the app's node deleted (uninstall)", vec![a()], None, json!({"200": ok("Deleted; reconciliation jobs.", "AppJobs"), "404": err("Unknown app.")}))
        },
        "/api/v1/apps/{app_id}/content": {
            "put": op("upgradeApp", "Replace an uploaded app's package by a newer version: an MSI of the same product (same ProductCode or UpgradeCode, newer ProductVersion), or an MSIX of the same package family (newer Version); assigned devices get it", {let mut v = vec![a()]; v.extend(upload_params()); v}, Some(json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})), json!({
                "200": ok("The app (revision bumped) with `jobs`.", "App"),
                "400": err("Not a valid package, another product or package family, or not an uploaded app of that kind."),
                "404": err("Unknown app."),
                "409": err("Not newer, or quota used up."),
                "413": err("Larger than --app-max-mb.")}))
        },
        "/api/v1/apps/{app_id}/assignments": {
            "post": op("assignApp", "Assign an app to a device group (device or user scope; required or uninstall); replaces another scope/intent of this app on that group", vec![a()], Some(body("AppAssignment")), json!({
                "201": ok("Assigned; reconciliation jobs.", "AppJobs"),
                "200": ok("Was assigned already.", "AppJobs"),
                "400": err("Invalid JSON."),
                "404": err("Unknown app or group.")}))
        },
        "/api/v1/apps/{app_id}/assignments/{group_id}": {
            "delete": op("unassignApp", "Remove an app's assignment to a group; devices no longer getting it uninstall it", vec![a(), id("group_id")], None, json!({
                "200": ok("Removed; reconciliation jobs.", "AppJobs"),
                "404": err("Unknown app or not assigned to that group.")}))
        },
        "/api/v1/apps/{app_id}/devices": {
            "get": op("appDevices", "The app's state on each device it is delivered to", {let mut v = vec![a()]; v.extend(page()); v}, None, json!({"200": ok("A page of states.", "DeviceAppStatePage"), "404": err("Unknown app.")}))
        },
        "/api/v1/esp": {
            "post": op("createEsp", "Create an Enrollment Status Page configuration: blocking apps and configuration profiles, timeout, remediation options, error text", vec![], Some(body("EspInput")), json!({
                "201": ok("The ESP.", "Esp"), "400": err("Invalid fields, or an app's managed profile in profiles."), "404": err("Unknown app or profile.")})),
            "get": op("listEsp", "List ESP configurations", page(), None, json!({"200": ok("A page.", "EspPage"), "400": err("Invalid limit.")}))
        },
        "/api/v1/esp/{esp_id}": {
            "get": op("getEsp", "One ESP with its groups", vec![id("esp_id")], None, json!({"200": ok("The ESP.", "EspDetail"), "404": err("Unknown ESP.")})),
            "put": op("updateEsp", "Replace an ESP's configuration (the rules of createEsp; its group assignments stay)", vec![id("esp_id")], Some(body("EspInput")), json!({"200": ok("The ESP.", "Esp"), "400": err("Invalid fields."), "404": err("Unknown ESP or app.")})),
            "delete": op("deleteEsp", "Delete an ESP (devices being tracked finish as started)", vec![id("esp_id")], None, json!({"204": {"description": "Deleted."}, "404": err("Unknown ESP.")}))
        },
        "/api/v1/esp/{esp_id}/assignments": {
            "post": op("assignEsp", "Assign an ESP to a device group: its devices enrolling in OOBE get it", vec![id("esp_id")], Some(body("GroupRef")), json!({
                "201": ok("Assigned.", "GroupRef"), "200": ok("Was assigned.", "GroupRef"), "400": err("Invalid JSON."), "404": err("Unknown ESP or group.")}))
        },
        "/api/v1/esp/{esp_id}/assignments/{group_id}": {
            "delete": op("unassignEsp", "Remove an ESP's assignment to a group", vec![id("esp_id"), id("group_id")], None, json!({"204": {"description": "Removed."}, "404": err("Not assigned.")}))
        },
        "/api/v1/devices/{device_id}/esp": {
            "get": op("deviceEsp", "A device's ESP progress: phase, deadline, each expected app's and profile's state, how each phase ended", vec![id("device_id")], None, json!({"200": ok("The progress.", "EspProgress"), "404": err("Unknown device, or no ESP tracked.")}))
        },
        "/api/v1/devices/{device_id}/apps": {
            "get": op("deviceApps", "Every app's state on one device", vec![id("device_id")], None, json!({"200": ok("The states.", "DeviceApps"), "404": err("Unknown device.")}))
        }
    })
}

/// The schemas of the app routes.
pub fn schemas() -> Value {
    let opts = json!({
        "command_line": {"type": "string", "maxLength": 1024},
        "timeout_minutes": {"type": "integer", "maximum": 1440},
        "retry_count": {"type": "integer", "maximum": 10},
        "retry_interval_minutes": {"type": "integer", "maximum": 1440}
    });
    let mut external = json!({
        "type": "object",
        "required": ["name", "url", "sha256"],
        "properties": {
            "kind": {"type": "string", "enum": ["msi", "msix"], "default": "msi"},
            "name": {"type": "string"},
            "url": {"type": "string", "description": "https URL devices download the package from."},
            "sha256": {"type": "string", "description": "SHA-256 of the package, 64 hex digits."},
            "product_code": {"type": "string", "description": "MSI: ProductCode {GUID}."},
            "product_version": {"type": "string", "description": "MSI: ProductVersion."},
            "package_family_name": {"type": "string", "description": "MSIX: Name_PublisherId."},
            "package_name": {"type": "string", "description": "MSIX: Identity/@Name (with publisher: the family name is computed)."},
            "publisher": {"type": "string", "description": "MSIX: Identity/@Publisher; MSI: Manufacturer."}
        }
    });
    if let (Some(p), Value::Object(o)) = (external["properties"].as_object_mut(), opts.clone()) {
        p.extend(o);
    }
    let mut app = json!({
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["msi", "msix"]},
            "content_id": {"type": "string", "nullable": true, "description": "Set for an uploaded package (served by winmdm)."},
            "url": {"type": "string", "nullable": true, "description": "External URL."},
            "size": {"type": "integer", "nullable": true},
            "sha256": {"type": "string"},
            "product_code": {"type": "string", "nullable": true},
            "product_version": {"type": "string", "nullable": true},
            "publisher": {"type": "string", "nullable": true},
            "upgrade_code": {"type": "string", "nullable": true},
            "package_family_name": {"type": "string", "nullable": true},
            "revision": {"type": "integer"},
            "created_at": {"type": "integer"},
            "updated_at": {"type": "integer"},
            "jobs": {"type": "array", "items": {"type": "object"}, "description": "Reconciliation jobs started (upload/upgrade)."}
        }
    });
    if let (Some(p), Value::Object(o)) = (app["properties"].as_object_mut(), opts) {
        p.extend(o);
    }
    let state = json!({
        "type": "object",
        "properties": {
            "app_id": {"type": "string"},
            "device_id": {"type": "string"},
            "scope": {"type": "string", "enum": ["device", "user"]},
            "intent": {"type": "string", "enum": ["required", "uninstall"]},
            "state": {"type": "string", "enum": ["pending", "downloading", "installing", "installed", "failed", "not_applicable", "uninstalling", "uninstalled"]},
            "version": {"type": "string", "description": "Installed ProductVersion."},
            "error_code": {"type": "string", "description": "MSI/Win32 code (decimal) or HRESULT (0x...)."},
            "error": {"type": "string", "description": "What the code means."},
            "reason": {"type": "string"},
            "profile_version": {"type": "integer"},
            "command_ids": {"type": "array", "items": {"type": "string"}},
            "updated_at": {"type": "integer"}
        }
    });
    json!({
        "ExternalApp": external,
        "App": app,
        "AppPage": {"type": "object", "properties": {"apps": {"type": "array", "items": {"$ref": "#/components/schemas/App"}}, "next": {"type": "string", "nullable": true}}},
        "AppDetail": {"allOf": [{"$ref": "#/components/schemas/App"}, {"type": "object", "properties": {"assignments": {"type": "array", "items": {"$ref": "#/components/schemas/AppAssignment"}}}}]},
        "AppAssignment": {"type": "object", "required": ["group_id"], "properties": {
            "group_id": {"type": "string"},
            "scope": {"type": "string", "enum": ["device", "user"], "default": "device"},
            "intent": {"type": "string", "enum": ["required", "uninstall"], "default": "required"}}},
        "AppJobs": {"type": "object", "properties": {"jobs": {"type": "array", "items": {"type": "object"}}}},
        "DeviceAppState": state,
        "DeviceAppStatePage": {"type": "object", "properties": {"devices": {"type": "array", "items": {"$ref": "#/components/schemas/DeviceAppState"}}, "next": {"type": "string", "nullable": true}}},
        "EspInput": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "apps": {"type": "array", "items": {"type": "string"}, "maxItems": 50, "description": "Blocking app ids (those assigned to the device are tracked)."},
            "profiles": {"type": "array", "items": {"type": "string"}, "maxItems": 50, "description": "Blocking configuration profile ids (those assigned to the device are tracked; FirstSyncStatus/ExpectedPolicies lists the LocURIs they set). Not the managed profiles of apps."},
            "timeout_minutes": {"type": "integer", "minimum": 1, "maximum": 1440, "default": 60, "description": "TimeOutUntilSyncFailure."},
            "block": {"type": "boolean", "default": true},
            "allow_reset": {"type": "boolean", "default": false, "description": "BlockInStatusPage bit 1."},
            "allow_retry": {"type": "boolean", "default": true, "description": "BlockInStatusPage bit 2."},
            "allow_continue": {"type": "boolean", "default": false, "description": "BlockInStatusPage bit 4: the user may continue on failure."},
            "allow_collect_logs": {"type": "boolean", "default": true},
            "custom_error_text": {"type": "string", "maxLength": 1024},
            "skip_device_page": {"type": "boolean", "default": false},
            "skip_user_page": {"type": "boolean", "default": false},
            "autopilot_profiles": {"type": "array", "items": {"type": "string"}, "maxItems": 16, "description": "Autopilot profiles (id or name) to attach it to: the devices they apply to get this ESP (a group assignment takes precedence)."}}},
        "Esp": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "apps": {"type": "array", "items": {"type": "string"}},
            "profiles": {"type": "array", "items": {"type": "string"}},
            "timeout_minutes": {"type": "integer"}, "block": {"type": "boolean"}, "allow_reset": {"type": "boolean"},
            "allow_retry": {"type": "boolean"}, "allow_continue": {"type": "boolean"}, "allow_collect_logs": {"type": "boolean"},
            "custom_error_text": {"type": "string", "nullable": true}, "skip_device_page": {"type": "boolean"},
            "skip_user_page": {"type": "boolean"}, "autopilot_profiles": {"type": "array", "items": {"type": "string"}}, "created_at": {"type": "integer"}}},
        "EspPage": {"type": "object", "properties": {"esp": {"type": "array", "items": {"$ref": "#/components/schemas/Esp"}}, "next": {"type": "string", "nullable": true}}},
        "EspDetail": {"allOf": [{"$ref": "#/components/schemas/Esp"}, {"type": "object", "properties": {"groups": {"type": "array", "items": {"type": "string"}}}}]},
        "GroupRef": {"type": "object", "required": ["group_id"], "properties": {"group_id": {"type": "string"}}},
        "EspProgress": {"type": "object", "properties": {
            "esp_id": {"type": "string"}, "device_id": {"type": "string"}, "enrolled_at": {"type": "integer"},
            "started_at": {"type": "integer"}, "timeout_minutes": {"type": "integer"}, "deadline": {"type": "integer"},
            "phase": {"type": "string", "enum": ["device", "user", "done"]},
            "expected": {"type": "array", "items": {"type": "object"}},
            "expected_policies": {"type": "array", "items": {"type": "object", "properties": {"profile_id": {"type": "string"}, "scope": {"type": "string"}, "nodes": {"type": "array", "items": {"type": "string"}}}}},
            "policies": {"type": "array", "description": "Each expected configuration profile: its LocURIs and the reconciler's status on the device (`applied` finishes it).", "items": {"type": "object", "properties": {"profile_id": {"type": "string"}, "scope": {"type": "string", "enum": ["device", "user"]}, "nodes": {"type": "array", "items": {"type": "string"}}, "state": {"type": "string", "enum": ["pending", "verifying", "applied", "failed", "not_applicable", "removing", "removed", "missing"]}, "error": {"type": "string", "nullable": true}}}},
            "items": {"type": "array", "items": {"type": "object", "properties": {"app_id": {"type": "string"}, "scope": {"type": "string"}, "node": {"type": "string"}, "state": {"type": "string", "nullable": true}, "error": {"type": "string", "nullable": true}}}},
            "device": {"type": "object", "nullable": true, "properties": {"at": {"type": "integer"}, "success": {"type": "boolean"}, "reason": {"type": "string"}}},
            "user": {"type": "object", "nullable": true, "properties": {"at": {"type": "integer"}, "success": {"type": "boolean"}, "reason": {"type": "string"}}},
            "command_ids": {"type": "array", "items": {"type": "string"}}}},
        "DeviceApps": {"type": "object", "properties": {"apps": {"type": "array", "items": {"$ref": "#/components/schemas/DeviceAppState"}}}}
    })
}

/// Adds the app paths and schemas to `doc`.
pub fn merge(mut doc: Value) -> Value {
    if let (Some(m), Value::Object(extra)) = (doc["paths"].as_object_mut(), paths()) {
        m.extend(extra);
    }
    if let (Some(m), Value::Object(extra)) =
        (doc["components"]["schemas"].as_object_mut(), schemas())
    {
        m.extend(extra);
    }
    doc
}
