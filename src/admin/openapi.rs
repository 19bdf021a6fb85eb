//! The OpenAPI 3.0 document of the admin API, served at `GET /api/v1/openapi.json`.
//!
//! Its `paths` list exactly the routes in [`super::ROUTES`] (a unit test checks both ways).

use serde_json::{json, Value};

pub(super) fn err(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

pub(super) fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

pub(super) fn body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

pub(super) fn param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": description,
        "schema": {"type": "string"}
    })
}

fn device_id() -> Value {
    param(
        "device_id",
        "The DeviceID (MS-MDE2 ContextItem `DeviceID`).",
    )
}

/// Errors every route can answer.
pub(super) fn common(mut responses: Value) -> Value {
    let m = responses.as_object_mut().expect("responses object");
    m.insert(
        "401".into(),
        err("Missing, invalid or revoked bearer token (`WWW-Authenticate: Bearer`)."),
    );
    m.insert(
        "403".into(),
        err("A read-only token on a route that changes something."),
    );
    m.insert("405".into(), err("Method not allowed on this path."));
    m.insert(
        "500".into(),
        err("Internal error (details are logged only)."),
    );
    responses
}

fn nullable(t: &str) -> Value {
    json!({"type": t, "nullable": true})
}

pub(super) fn page_params(cursor: &str) -> Value {
    json!([
        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": super::MAX_PAGE, "default": super::DEFAULT_PAGE}},
        {"name": "cursor", "in": "query", "required": false, "description": cursor, "schema": {"type": "string"}}
    ])
}

fn paths() -> Value {
    json!({
        "/api/v1/users": {
            "post": {
                "operationId": "createUser",
                "summary": "Create an enrollment user",
                "requestBody": body("NewUser"),
                "responses": common(json!({
                    "201": ok("Created.", "User"),
                    "400": err("Invalid UPN, password or JSON."),
                    "409": err("The user exists."),
                    "413": err("Body too large.")
                }))
            },
            "get": {
                "operationId": "listUsers",
                "summary": "List users, ordered by UPN, one page at a time",
                "parameters": page_params("The `next` of the previous page (a UPN)."),
                "responses": common(json!({
                    "200": ok("One page.", "UserList"),
                    "400": err("Invalid limit or unknown query parameter.")
                }))
            }
        },
        "/api/v1/users/{upn}": {
            "get": {
                "operationId": "getUser",
                "summary": "One user, with the DeviceIDs enrolled by them",
                "parameters": [param("upn", "The user's UPN (case-insensitive, percent-encoded).")],
                "responses": common(json!({
                    "200": ok("The user.", "UserDetail"),
                    "404": err("Unknown user.")
                }))
            },
            "patch": {
                "operationId": "updateUser",
                "summary": "Change a user's password and/or disable or enable them",
                "parameters": [param("upn", "The user's UPN (case-insensitive, percent-encoded).")],
                "requestBody": body("UserPatch"),
                "responses": common(json!({
                    "200": ok("The updated user.", "User"),
                    "400": err("Empty patch, unknown field, invalid password or JSON."),
                    "404": err("Unknown user.")
                }))
            },
            "delete": {
                "operationId": "deleteUser",
                "summary": "Delete a user",
                "parameters": [param("upn", "The user's UPN (case-insensitive, percent-encoded).")],
                "responses": common(json!({
                    "204": {"description": "Deleted."},
                    "404": err("Unknown user.")
                }))
            }
        },
        "/api/v1/devices": {
            "get": {
                "operationId": "listDevices",
                "summary": "List devices, ordered by DeviceID, one page at a time, optionally filtered",
                "description": "A request examines at most SCAN_BUDGET records: with a sparse filter a page may hold fewer than `limit` devices while `next` is still set; follow `next` until it is null.",
                "parameters": [
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": super::MAX_PAGE, "default": super::DEFAULT_PAGE}},
                    {"name": "cursor", "in": "query", "required": false, "description": "The `next` of the previous page.", "schema": {"type": "string"}},
                    {"name": "user", "in": "query", "required": false, "description": "Owned by the account with this UPN (devices a deleted account of the same UPN left are not its).", "schema": {"type": "string"}},
                    {"name": "owner_status", "in": "query", "required": false, "schema": {"type": "string", "enum": ["active", "disabled", "orphaned", "device_only"]}},
                    {"name": "state", "in": "query", "required": false, "schema": {"type": "string", "enum": ["enrolled", "unenrolled"]}},
                    {"name": "device_type", "in": "query", "required": false, "description": "e.g. CIMClient_Windows (case-insensitive).", "schema": {"type": "string"}},
                    {"name": "enrollment_type", "in": "query", "required": false, "schema": {"type": "string", "enum": ["Full", "Device"]}},
                    {"name": "os_edition", "in": "query", "required": false, "description": "Windows product type number (72, 135, 136…).", "schema": {"type": "string"}},
                    {"name": "last_seen_before", "in": "query", "required": false, "description": "Unix seconds; devices never seen match.", "schema": {"type": "integer"}},
                    {"name": "last_seen_after", "in": "query", "required": false, "description": "Unix seconds.", "schema": {"type": "integer"}}
                ],
                "responses": common(json!({
                    "200": ok("One page.", "DevicePage"),
                    "400": err("Invalid limit or unknown query parameter.")
                }))
            }
        },
        "/api/v1/devices/{device_id}": {
            "get": {
                "operationId": "getDevice",
                "summary": "One device record (inventory, login status, certificate, state)",
                "parameters": [device_id()],
                "responses": common(json!({
                    "200": ok("The device.", "Device"),
                    "404": err("Unknown device.")
                }))
            },
            "delete": {
                "operationId": "deleteDevice",
                "summary": "Delete the device record: cancels its unanswered commands, drops its sessions and revokes its certificate, atomically",
                "parameters": [device_id()],
                "responses": common(json!({
                    "204": {"description": "Deleted; its certificate now gets 403."},
                    "404": err("Unknown device.")
                }))
            }
        },
        "/api/v1/devices/{device_id}/actions": {
            "post": {
                "operationId": "createAction",
                "summary": "Ask the device to wipe, reboot, retire (unenroll) or sync at its next session",
                "parameters": [device_id()],
                "requestBody": body("NewAction"),
                "responses": common(json!({
                    "202": ok("Queued (or, for wipe/wipe-protected/retire, the one still unanswered: `existing: true`).", "ActionAccepted"),
                    "400": err("Unknown action or invalid JSON."),
                    "404": err("Unknown device."),
                    "409": err("The device is not enrolled.")
                }))
            }
        },
        "/api/v1/devices/{device_id}/actions/{action_id}": {
            "get": {
                "operationId": "getAction",
                "summary": "Where an action is: the state of its command",
                "parameters": [device_id(), param("action_id", "The action id.")],
                "responses": common(json!({
                    "200": ok("The action.", "Action"),
                    "404": err("Unknown device or action.")
                }))
            }
        },
        "/api/v1/audit": {
            "get": {
                "operationId": "listAudit",
                "summary": "The audit log of admin changes, oldest first, one page at a time",
                "parameters": page_params("The `next` of the previous page."),
                "responses": common(json!({
                    "200": ok("One page.", "AuditPage"),
                    "400": err("Invalid limit, cursor or unknown query parameter.")
                }))
            }
        },
        "/api/v1/devices/{device_id}/commands": {
            "post": {
                "operationId": "createCommand",
                "summary": "Queue a command for the device's next management session",
                "parameters": [device_id()],
                "requestBody": body("NewCommand"),
                "responses": common(json!({
                    "201": ok("Queued.", "Enqueued"),
                    "200": ok("A command with this `command_id` exists already (ids of commands deleted by the retention sweep can be used again).", "Enqueued"),
                    "400": err("Invalid command."),
                    "404": err("Unknown device."),
                    "409": err("The device is not enrolled."),
                    "413": err("Body too large.")
                }))
            },
            "get": {
                "operationId": "listCommands",
                "summary": "The device's commands with their states and results",
                "description": "Answered and cancelled commands stay listed for the server's `--command-retention` (default 90 days), then a background sweep deletes them; unanswered ones stay until answered or cancelled.",
                "parameters": [device_id()],
                "responses": common(json!({
                    "200": ok("The commands, oldest first.", "CommandList"),
                    "404": err("Unknown device.")
                }))
            },
            "delete": {
                "operationId": "clearCommands",
                "summary": "Cancel every unanswered command of the device",
                "parameters": [device_id()],
                "responses": common(json!({
                    "200": ok("How many were cancelled.", "Cancelled"),
                    "404": err("Unknown device.")
                }))
            }
        },
        "/api/v1/devices/{device_id}/commands/{command_id}": {
            "delete": {
                "operationId": "cancelCommand",
                "summary": "Cancel one unanswered command",
                "parameters": [device_id(), param("command_id", "The command id.")],
                "responses": common(json!({
                    "204": {"description": "Cancelled."},
                    "404": err("Unknown command."),
                    "409": err("The command is already in a final state.")
                }))
            }
        },
        "/api/v1/commands": {
            "post": {
                "operationId": "bulkCommand",
                "summary": "Queue the same command for many devices",
                "requestBody": body("BulkCommand"),
                "responses": common(json!({
                    "200": ok("One result per device id.", "BulkResults"),
                    "400": err("Invalid command or device_ids."),
                    "413": err("Body too large (8 MiB).")
                }))
            }
        },
        "/api/v1/devices/{device_id}/tenant-lockdown": {
            "put": {
                "operationId": "setTenantLockdown",
                "summary": "Queue TenantLockdown RequireNetworkInOOBE",
                "parameters": [device_id()],
                "requestBody": body("TenantLockdown"),
                "responses": common(json!({
                    "201": ok("Queued.", "Enqueued"),
                    "200": ok("The same command is queued already.", "Enqueued"),
                    "400": err("Invalid JSON."),
                    "404": err("Unknown device."),
                    "409": err("The device is not enrolled.")
                }))
            }
        },
        "/api/v1/devices/{device_id}/assign-user": {
            "post": {
                "operationId": "assignUser",
                "summary": "Assign a bulk-enrolled device to a real user (recorded with who and when)",
                "parameters": [device_id()],
                "requestBody": body("AssignUser"),
                "responses": common(json!({
                    "200": ok("The device, with `assigned_user`.", "Device"),
                    "400": err("Invalid JSON or UPN."),
                    "404": err("Unknown device or user."),
                    "409": err("The device was not bulk-enrolled.")
                }))
            }
        },
        "/api/v1/devices/{device_id}/owner": {
            "put": {
                "operationId": "transferDevice",
                "summary": "Hand a device to another user on purpose (audited `device.transfer`): only the new owner may enroll its DeviceID again",
                "parameters": [device_id()],
                "requestBody": body("AssignUser"),
                "responses": common(json!({
                    "200": ok("The device, with its new `upn` and `owner`.", "Device"),
                    "400": err("Invalid JSON or UPN."),
                    "404": err("Unknown device or user."),
                    "409": err("The user is disabled.")
                }))
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": common(json!({
                    "200": {"description": "The OpenAPI 3.0 document.", "content": {"application/json": {"schema": {"type": "object"}}}}
                }))
            }
        }
    })
}

/// Schemas of the user, action and audit routes (apart: `json!` has a recursion limit).
fn lifecycle_schemas() -> Value {
    json!({
        "UserDetail": {
            "type": "object",
            "required": ["upn", "created_at", "disabled", "devices"],
            "properties": {
                "upn": {"type": "string"},
                "created_at": {"type": "integer", "format": "int64", "description": "Unix seconds."},
                "disabled": {"type": "boolean"},
                "devices": {"type": "array", "items": {"type": "string"}, "description": "DeviceIDs of the device records enrolled by this user."}
            }
        },
        "UserPatch": {
            "type": "object",
            "additionalProperties": false,
            "minProperties": 1,
            "properties": {
                "password": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "New password (stored as a new argon2id hash)."},
                "disabled": {"type": "boolean", "description": "A disabled user cannot enroll."}
            }
        },
        "NewAction": {
            "type": "object",
            "additionalProperties": false,
            "required": ["action"],
            "properties": {"action": {"type": "string", "enum": ["wipe", "wipe-protected", "reboot", "retire", "sync"]}}
        },
        "ActionAccepted": {
            "type": "object",
            "required": ["action_id", "action"],
            "properties": {
                "action_id": {"type": "string"},
                "action": {"type": "string"},
                "existing": {"type": "boolean", "description": "Present (true) when an unanswered action of this kind was reused."}
            }
        },
        "Action": {
            "type": "object",
            "required": ["action_id", "action", "state", "created_at"],
            "properties": {
                "action_id": {"type": "string"},
                "action": {"type": "string"},
                "state": {"$ref": "#/components/schemas/CommandState"},
                "status": {"type": "integer", "nullable": true, "description": "The device's Status code."},
                "created_at": {"type": "integer", "format": "int64"},
                "completed_at": {"type": "integer", "format": "int64", "nullable": true}
            }
        },
        "AuditEntry": {
            "type": "object",
            "required": ["id", "at", "actor", "action", "target", "detail"],
            "properties": {
                "id": {"type": "integer", "format": "int64"},
                "at": {"type": "integer", "format": "int64"},
                "actor": {"type": "string", "description": "`admin` (the bootstrap token)."},
                "action": {"type": "string", "description": "user.create, user.update, user.delete, command.enqueue, command.cancel, command.clear, command.bulk, device.tenant_lockdown, device.delete, device.action"},
                "target": {"type": "string"},
                "detail": {"type": "object"}
            }
        },
        "AuditPage": {
            "type": "object",
            "required": ["entries", "next"],
            "properties": {
                "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
                "next": {"type": "string", "nullable": true}
            }
        }
    })
}

fn schemas(command_fields: Value, bulk_fields: Value) -> Value {
    let mut v = base_schemas(command_fields, bulk_fields);
    if let (Some(m), Value::Object(extra)) = (v.as_object_mut(), lifecycle_schemas()) {
        m.extend(extra);
    }
    v
}

fn base_schemas(command_fields: Value, bulk_fields: Value) -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}}
        },
        "NewUser": {
            "type": "object",
            "additionalProperties": false,
            "required": ["upn", "password"],
            "properties": {
                "upn": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Stored lower-case; no spaces, control characters or '/'."},
                "password": {"type": "string", "minLength": 1, "maxLength": 1024}
            }
        },
        "User": {
            "type": "object",
            "required": ["upn", "created_at", "disabled"],
            "properties": {
                "upn": {"type": "string"},
                "created_at": {"type": "integer", "format": "int64", "description": "Unix seconds."},
                "disabled": {"type": "boolean"}
            }
        },
        "UserList": {
            "type": "object",
            "required": ["users", "next"],
            "properties": {
                "users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
                "next": {"type": "string", "nullable": true, "description": "Cursor of the next page; null at the end."}
            }
        },
        "DeviceAlert": {
            "type": "object",
            "properties": {
                "alert_type": nullable("string"),
                "source": nullable("string"),
                "data": nullable("string"),
                "at": {"type": "integer", "format": "int64"}
            }
        },
        "Device": {
            "type": "object",
            "required": ["device_id", "enrollment_type", "cert_serial", "cert_thumbprint", "cert_not_after", "enrolled_at", "state"],
            "properties": {
                "device_id": {"type": "string"},
                "hw_dev_id": nullable("string"),
                "upn": nullable("string"),
                "enrollment_type": {"type": "string", "description": "`Full` (user) or `Device`."},
                "device_type": nullable("string"),
                "os_version": nullable("string"),
                "os_edition": nullable("string"),
                "device_name": nullable("string"),
                "application_version": nullable("string"),
                "locale": nullable("string"),
                "macs": {"type": "array", "items": {"type": "string"}},
                "not_in_oobe": nullable("boolean"),
                "ux_initiated": nullable("boolean"),
                "cert_serial": {"type": "string", "description": "Lower hex."},
                "cert_thumbprint": {"type": "string", "description": "SHA-1, upper hex."},
                "cert_not_after": {"type": "integer", "format": "int64"},
                "enrolled_at": {"type": "integer", "format": "int64"},
                "state": {"type": "string", "description": "Lifecycle state."},
                "login_status": {"type": "string", "nullable": true, "description": "`user`, `others`, `none` or `unknown`."},
                "last_seen": {"type": "integer", "format": "int64", "nullable": true},
                "inventory": {"type": "object", "additionalProperties": {"type": "string"}, "description": "./DevInfo/* and ./DevDetail/* node → value."},
                "tenant_lockdown": nullable("boolean"),
                "bulk": {"type": "boolean", "description": "Enrolled with a `windows-bulkenroll…` account: device-scope commands only."},
                "assigned_user": {"type": "object", "nullable": true, "properties": {"upn": {"type": "string"}, "by": {"type": "string"}, "at": {"type": "integer", "format": "int64"}}},
                "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/DeviceAlert"}},
                "owner": {"type": "object", "nullable": true, "description": "Who owns the enrollment: `{\"kind\": \"user\", \"user_id\"}` (the account's immutable id) or `{\"kind\": \"entra_app\", \"tenant\", \"app\"}`; only this principal may enroll the DeviceID again."},
                "owner_status": {"type": "string", "enum": ["active", "disabled", "orphaned", "device_only"], "description": "Whether the owning account still exists (`orphaned`: deleted; the device stays managed)."},
                "previous_cert": {"type": "object", "nullable": true, "description": "The certificate the last renewal replaced, still accepted until the device's first session with the new one or `grace_until`.", "properties": {"serial": {"type": "string"}, "thumbprint": {"type": "string"}, "not_after": {"type": "integer", "format": "int64"}, "grace_until": {"type": "integer", "format": "int64"}}},
                "renewals": {"type": "array", "description": "Certificate renewals (ROBO), oldest first.", "items": {"type": "object", "properties": {"at": {"type": "integer", "format": "int64"}, "old_serial": {"type": "string"}, "new_serial": {"type": "string"}, "new_not_after": {"type": "integer", "format": "int64"}}}}
            }
        },
        "DevicePage": {
            "type": "object",
            "required": ["devices", "next"],
            "properties": {
                "devices": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}},
                "next": {"type": "string", "nullable": true, "description": "Cursor of the next page; null at the end."}
            }
        },
        "NewItem": {
            "type": "object",
            "additionalProperties": false,
            "required": ["target"],
            "properties": {
                "target": {"type": "string"},
                "format": {"type": "string"},
                "type": {"type": "string"},
                "data": {"type": "string"}
            }
        },
        "NewCommand": {
            "type": "object",
            "additionalProperties": false,
            "description": "Either `verb` with `target` (and format/type/data) or `items`, or `syncml`.",
            "properties": command_fields
        },
        "BulkCommand": {
            "type": "object",
            "additionalProperties": false,
            "required": ["device_ids"],
            "properties": bulk_fields
        },
        "Enqueued": {
            "type": "object",
            "required": ["command_id"],
            "properties": {
                "command_id": {"type": "string"},
                "existing": {"type": "boolean", "description": "Present (true) when the id was queued before."}
            }
        },
        "ResultItem": {
            "type": "object",
            "properties": {
                "target": nullable("string"),
                "format": nullable("string"),
                "type": nullable("string"),
                "data": nullable("string")
            }
        },
        "CommandState": {
            "type": "string",
            "enum": ["pending", "sent", "done", "failed", "cancelled", "cancelled_by_device", "not_executed", "rolled_back"],
            "description": "`pending`: waits for a session. `sent`: no Status yet, or a Get answered 2xx whose Results have not arrived (goes out again if the session ends without them). `done`: 2xx, every inner command of an Atomic/Sequence 2xx too, a Get's Results received. `failed`: 4xx/5xx, or an inner command failed (see `inner`; `status` is then the group's own code), or the server gave up (see `error`). `cancelled`: by an admin. `cancelled_by_device`: 214. `not_executed`: 215 (the user declined). `rolled_back`: 216 (inside a failed Atomic). Only `done` counts as applied."
        },
        "InnerStatus": {
            "type": "object",
            "required": ["cmd_id", "verb", "targets"],
            "description": "A command nested in an Atomic/Sequence and the device's code for it.",
            "properties": {
                "cmd_id": {"type": "string", "description": "CmdID it was last sent with."},
                "verb": {"type": "string"},
                "targets": {"type": "array", "items": {"type": "string"}},
                "status": {"type": "integer", "nullable": true, "description": "The device's Status code (`null`: none received)."}
            }
        },
        "Command": {
            "type": "object",
            "required": ["command_id", "verb", "state", "results", "inner", "results_truncated", "created_at", "send_count"],
            "properties": {
                "command_id": {"type": "string"},
                "verb": {"type": "string"},
                "target": nullable("string"),
                "state": {"$ref": "#/components/schemas/CommandState"},
                "status": {"type": "integer", "nullable": true, "description": "The device's Status code (for an Atomic/Sequence: its own code; see `inner`)."},
                "inner": {"type": "array", "items": {"$ref": "#/components/schemas/InnerStatus"}, "description": "Atomic/Sequence: every nested command, in order, with its code."},
                "error": {"type": "string", "nullable": true, "description": "Why the server failed the command although the device did not: results lost (424, interrupted or abandoned large object, 2xx without Results), or too large for the device's MaxMsgSize."},
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/ResultItem"}},
                "results_truncated": {"type": "boolean", "description": "Results were cut at the per-command bound (items or bytes)."},
                "created_at": {"type": "integer", "format": "int64"},
                "sent_at": {"type": "integer", "format": "int64", "nullable": true},
                "completed_at": {"type": "integer", "format": "int64", "nullable": true},
                "send_count": {"type": "integer"}
            }
        },
        "CommandList": {
            "type": "object",
            "required": ["commands"],
            "properties": {"commands": {"type": "array", "items": {"$ref": "#/components/schemas/Command"}}}
        },
        "Cancelled": {
            "type": "object",
            "required": ["cancelled"],
            "properties": {"cancelled": {"type": "integer"}}
        },
        "BulkResults": {
            "type": "object",
            "required": ["results"],
            "properties": {
                "results": {
                    "type": "object",
                    "description": "Device id → `{command_id, existing}` or `{error}`.",
                    "additionalProperties": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Enqueued"},
                            {"$ref": "#/components/schemas/Error"}
                        ]
                    }
                }
            }
        },
        "TenantLockdown": {
            "type": "object",
            "additionalProperties": false,
            "required": ["require_network_in_oobe"],
            "properties": {"require_network_in_oobe": {"type": "boolean"}}
        },
        "AssignUser": {
            "type": "object",
            "additionalProperties": false,
            "required": ["upn"],
            "properties": {"upn": {"type": "string"}}
        }
    })
}

/// The OpenAPI 3.0.3 document.
pub fn document() -> Value {
    let command_fields = json!({
        "verb": {"type": "string", "enum": ["Get", "Add", "Replace", "Delete", "Exec"]},
        "target": {"type": "string", "description": "Target LocURI (single-item form).", "example": "./Vendor/MSFT/Policy/Config/Camera/AllowCamera"},
        "format": {"type": "string", "description": "Meta/Format (`chr`, `int`, `bool`, `b64`, `xml`, `node`, `null`…)."},
        "type": {"type": "string", "description": "Meta/Type (MIME type)."},
        "data": {"type": "string", "description": "Data."},
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/NewItem"}, "description": "Several items instead of target/format/type/data."},
        "syncml": {"type": "string", "description": "A SyncML command fragment instead of the fields above.", "example": "<Get><CmdID>1</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>"},
        "command_id": {"type": "string", "description": "Client-chosen id (idempotency key): a repeated id answers 200 with `existing: true`."}
    });
    let mut bulk_fields = command_fields.clone();
    bulk_fields.as_object_mut().expect("object").insert(
        "device_ids".into(),
        json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": super::MAX_BULK_DEVICES}),
    );
    let mut paths = paths();
    let mut schemas = schemas(command_fields, bulk_fields);
    let parts = [
        (
            super::autopilot::openapi::paths(),
            super::autopilot::openapi::schemas(),
        ),
        (
            super::webhook::openapi::paths(),
            super::webhook::openapi::schemas(),
        ),
        (
            super::traces::openapi::paths(),
            super::traces::openapi::schemas(),
        ),
    ];
    for (p, sch) in parts {
        for (all, extra) in [(&mut paths, p), (&mut schemas, sch)] {
            if let (Some(m), Value::Object(extra)) = (all.as_object_mut(), extra) {
                m.extend(extra);
            }
        }
    }
    for (all, extra) in [
        (&mut paths, super::tenant::openapi::paths()),
        (&mut schemas, super::tenant::openapi::schemas()),
    ] {
        if let (Some(m), Value::Object(extra)) = (all.as_object_mut(), extra) {
            m.extend(extra);
        }
    }
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "winmdm admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Users, devices and OMA-DM command queues of a winmdm server. Every route needs `Authorization: Bearer <token>`; errors are `{\"error\": \"...\"}`."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin token (WINMDM_ADMIN_TOKEN or DATA_DIR/admin-token)."
                }
            },
            "schemas": schemas
        }
    });
    super::openapi_access::extend(&mut doc);
    super::openapi_apps::merge(super::openapi_groups::merge(doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn document_paths_are_the_routes() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (m, op) in ops.as_object().unwrap() {
                assert!(op["responses"]["401"].is_object(), "{m} {path}: no 401");
                documented.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
        let routes: BTreeSet<(String, String)> = super::super::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, routes);
    }

    #[test]
    fn every_reference_resolves() {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").expect(&r);
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} is not defined"
            );
        }
    }
}
