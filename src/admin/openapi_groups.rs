//! OpenAPI paths and schemas of the group and profile routes (merged into [`super::openapi`]).

use serde_json::{json, Value};

use super::openapi::{body, err, ok};

fn id(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn page() -> [Value; 2] {
    [
        json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": super::MAX_PAGE}}),
        json!({"name": "cursor", "in": "query", "required": false, "description": "`next` of the previous page.", "schema": {"type": "string"}}),
    ]
}

/// One operation with the errors every route can answer.
fn op(
    op_id: &str,
    summary: &str,
    params: Vec<Value>,
    req: Option<Value>,
    mut responses: Value,
) -> Value {
    if let Some(m) = responses.as_object_mut() {
        m.insert("401".into(), err("Missing or invalid bearer token."));
        m.insert("405".into(), err("Method not allowed on this path."));
        m.insert("500".into(), err("Internal error."));
    }
    let mut o = json!({"operationId": op_id, "summary": summary, "parameters": params, "responses": responses});
    if let Some(b) = req {
        o["requestBody"] = b;
    }
    o
}

fn no_content(d: &str) -> Value {
    json!({"description": d})
}

/// The paths of `/api/v1/groups…`, `/api/v1/profiles…` and `/api/v1/devices/{id}/profiles`.
pub fn paths() -> Value {
    let g = || id("group_id");
    let p = || id("profile_id");
    json!({
        "/api/v1/groups": {
            "post": op("createGroup", "Create a static group, or a dynamic one (with `query`, evaluated at once)", vec![], Some(body("NewGroup")), json!({
                "201": ok("Created, with `evaluation`.", "Group"),
                "400": err("Invalid name or JSON; a query error names the column and what was expected."),
                "409": err("The name is taken.")})),
            "get": op("listGroups", "List groups", page().to_vec(), None, json!({"200": ok("A page of groups.", "GroupPage"), "400": err("Invalid limit.")}))
        },
        "/api/v1/groups/{group_id}": {
            "get": op("getGroup", "One group, with the profiles assigned to it", vec![g()], None, json!({"200": ok("The group.", "Group"), "404": err("Unknown group.")})),
            "patch": op("updateGroup", "Rename, describe or re-query a group (a new query is re-evaluated over every device)", vec![g()], Some(body("GroupPatch")), json!({
                "200": ok("The group, with `evaluation`.", "Group"),
                "400": err("Invalid JSON, name or query."),
                "404": err("Unknown group."),
                "409": err("Name taken, or a query for a static group.")})),
            "delete": op("deleteGroup", "Delete a group; profiles assigned through it are removed from its members", vec![g()], None, json!({"204": no_content("Deleted."), "404": err("Unknown group.")}))
        },
        "/api/v1/groups/{group_id}/members": {
            "get": op("listGroupMembers", "A page of members, by DeviceID", {let mut v = vec![g()]; v.extend(page()); v}, None, json!({"200": ok("Members.", "MemberPage"), "404": err("Unknown group.")})),
            "post": op("addGroupMembers", "Add devices to a static group", vec![g()], Some(body("DeviceIds")), json!({
                "200": ok("What changed.", "Evaluation"), "400": err("Invalid JSON or device_ids."), "404": err("Unknown group or device."), "409": err("A dynamic group.")})),
            "delete": op("removeGroupMembers", "Remove devices from a static group", vec![g()], Some(body("DeviceIds")), json!({
                "200": ok("What changed.", "Evaluation"), "400": err("Invalid JSON or device_ids."), "404": err("Unknown group."), "409": err("A dynamic group.")}))
        },
        "/api/v1/profiles": {
            "post": op("createProfile", "Create a configuration profile (SyncML fragments or settings)", vec![], Some(body("ProfileInput")), json!({
                "201": ok("Created (version 1).", "Profile"), "400": err("Invalid operations, scope, device_types or JSON."), "409": err("The name is taken."), "413": err("Body over 1 MiB.")})),
            "get": op("listProfiles", "List profiles", page().to_vec(), None, json!({"200": ok("A page of profiles.", "ProfilePage"), "400": err("Invalid limit.")}))
        },
        "/api/v1/profiles/{profile_id}": {
            "get": op("getProfile", "One profile, with its `assignments` (group ids)", vec![p()], None, json!({"200": ok("The profile.", "Profile"), "404": err("Unknown profile.")})),
            "patch": op("updateProfile", "Edit a profile; new operations bump the version and every device is reconciled", vec![p()], Some(body("ProfileInput")), json!({
                "200": ok("The profile, with `reconciled` and its finished `job`.", "Profile"), "202": ok("The profile; the reconciliation `job` goes on in the background (poll its `url`).", "Profile"), "400": err("Invalid input."), "404": err("Unknown profile."), "409": err("Name taken.")})),
            "delete": op("deleteProfile", "Delete a profile; devices get Deletes for the nodes it set", vec![p()], None, json!({"204": no_content("Deleted, devices reconciled."), "202": ok("Deleted; the reconciliation `job` goes on in the background.", "JobAccepted"), "404": err("Unknown profile.")}))
        },
        "/api/v1/profiles/{profile_id}/assignments": {
            "post": op("assignProfile", "Assign the profile to a group and reconcile its members", vec![p()], Some(body("NewAssignment")), json!({
                "201": ok("Assigned, members reconciled.", "Reconciled"), "200": ok("Already assigned.", "Reconciled"), "202": ok("Assigned; the reconciliation `job` goes on in the background.", "Reconciled"), "400": err("Invalid JSON."), "404": err("Unknown profile or group.")}))
        },
        "/api/v1/profiles/{profile_id}/assignments/{group_id}": {
            "delete": op("unassignProfile", "Remove an assignment; nodes no other profile of a device sets are deleted", vec![p(), g()], None, json!({
                "200": ok("Reconciled.", "Reconciled"), "202": ok("Removed; the reconciliation `job` goes on in the background.", "Reconciled"), "404": err("Unknown profile or assignment.")}))
        },
        "/api/v1/profiles/{profile_id}/push": {
            "post": op("pushProfile", "Re-push: bump the version (new command ids) and reconcile", vec![p()], None, json!({"200": ok("The profile, with `reconciled` and its finished `job`.", "Profile"), "202": ok("The profile; the reconciliation `job` goes on in the background.", "Profile"), "404": err("Unknown profile.")}))
        },
        "/api/v1/profiles/{profile_id}/status": {
            "get": op("profileStatus", "Per-device status of a profile, by DeviceID", {let mut v = vec![p()]; v.extend(page()); v}, None, json!({"200": ok("A page of statuses.", "StatusPage"), "404": err("Unknown profile.")}))
        },
        "/api/v1/devices/{device_id}/profiles": {
            "get": op("deviceProfiles", "Status of every profile on a device", vec![id("device_id")], None, json!({"200": ok("Statuses.", "DeviceProfiles"), "404": err("Unknown device.")}))
        },
        "/api/v1/jobs": {
            "get": op("listJobs", "Background jobs (profile reconciliations), in id order", page().to_vec(), None, json!({"200": ok("A page of jobs.", "JobPage"), "400": err("Invalid limit.")}))
        },
        "/api/v1/enrollments/refused": {
            "get": op("listRefusedEnrollments", "Enrollment requests refused in the last day (at most 1,000 kept), newest first, with the count per fault kind and each reason", vec![], None, json!({"200": ok("The refusals.", "RefusedEnrollments")}))
        },
        "/api/v1/jobs/{job_id}": {
            "get": op("getJob", "A job's state and progress (`done` of `total`, commands `queued`, errors)", vec![id("job_id")], None, json!({"200": ok("The job.", "Job"), "404": err("Unknown job.")}))
        }
    })
}

/// Schemas referenced by [`paths`].
pub fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let ns = |t: &str| json!({"type": t, "nullable": true});
    json!({
        "RefusedEnrollments": {"type": "object", "required": ["count", "by_kind", "refusals", "window_secs"], "properties": {
            "count": s("integer"),
            "by_kind": {"type": "object", "additionalProperties": s("integer"), "description": "Refusals per fault kind (Authentication, Authorization, MessageFormat, ...)."},
            "window_secs": s("integer"),
            "refusals": {"type": "array", "items": {"type": "object", "required": ["seq", "at", "endpoint", "kind", "detail"], "properties": {
                "seq": s("integer"), "at": {"type": "integer", "description": "Unix seconds."},
                "endpoint": {"type": "string", "enum": ["discovery", "policy", "enrollment", "renewal"]},
                "kind": s("string"), "detail": {"type": "string", "description": "The fault's reason, clipped to 240 bytes."}}}}}},
        "NewGroup": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": s("string"), "description": s("string"),
            "query": {"type": "string", "description": "Makes the group dynamic; see README \"Groups and profiles\".", "example": "device_type == \"hololens\" and group_tag == \"lab\""}}},
        "GroupPatch": {"type": "object", "additionalProperties": false, "properties": {"name": s("string"), "description": s("string"), "query": s("string")}},
        "Evaluation": {"type": "object", "properties": {"scanned": s("integer"), "joined": s("integer"), "left": s("integer"), "queued": s("integer")}},
        "Group": {"type": "object", "required": ["id", "name", "kind"], "properties": {
            "id": s("string"), "name": s("string"), "description": ns("string"),
            "kind": {"type": "string", "enum": ["static", "dynamic"]}, "query": ns("string"),
            "created_at": s("integer"), "updated_at": s("integer"),
            "profiles": {"type": "array", "items": s("string")},
            "evaluation": {"$ref": "#/components/schemas/Evaluation"}}},
        "GroupPage": {"type": "object", "properties": {"groups": {"type": "array", "items": {"$ref": "#/components/schemas/Group"}}, "next": ns("string")}},
        "MemberPage": {"type": "object", "properties": {"members": {"type": "array", "items": {"type": "object", "properties": {"device_id": s("string"), "since": s("integer")}}}, "next": ns("string")}},
        "DeviceIds": {"type": "object", "additionalProperties": false, "required": ["device_ids"], "properties": {"device_ids": {"type": "array", "items": s("string"), "minItems": 1, "maxItems": crate::groups::MAX_STATIC_BATCH}}},
        "Setting": {"type": "object", "additionalProperties": false, "required": ["target"], "properties": {
            "verb": {"type": "string", "enum": ["Replace", "Add", "Delete", "Exec"], "default": "Replace"},
            "target": s("string"), "format": s("string"), "type": s("string"), "data": s("string")}},
        "ProfileInput": {"type": "object", "additionalProperties": false, "properties": {
            "name": s("string"), "description": s("string"),
            "scope": {"type": "string", "enum": ["device", "user"], "default": "device"},
            "device_types": {"type": "array", "items": {"type": "string", "enum": ["windows-pc", "hololens"]}},
            "syncml": {"type": "string", "description": "Add/Replace/Delete/Exec fragments, at most one Atomic."},
            "settings": {"type": "array", "items": {"$ref": "#/components/schemas/Setting"}}}},
        "Operation": {"type": "object", "properties": {"verb": s("string"), "syncml": s("string"), "targets": {"type": "array", "items": s("string")}, "sets": {"type": "array", "items": s("string")}}},
        "Profile": {"type": "object", "required": ["id", "name", "scope", "version", "operations"], "properties": {
            "id": s("string"), "name": s("string"), "description": ns("string"),
            "scope": {"type": "string", "enum": ["device", "user"]},
            "device_types": {"type": "array", "items": s("string")},
            "version": s("integer"),
            "operations": {"type": "array", "items": {"$ref": "#/components/schemas/Operation"}},
            "created_at": s("integer"), "updated_at": s("integer"),
            "assignments": {"type": "array", "items": s("string")},
            "reconciled": {"$ref": "#/components/schemas/Reconciled"},
            "job": {"$ref": "#/components/schemas/Job"}}},
        "ProfilePage": {"type": "object", "properties": {"profiles": {"type": "array", "items": {"$ref": "#/components/schemas/Profile"}}, "next": ns("string")}},
        "NewAssignment": {"type": "object", "additionalProperties": false, "required": ["group_id"], "properties": {"group_id": s("string")}},
        "Reconciled": {"type": "object", "properties": {"devices": s("integer"), "queued": s("integer"), "job": {"$ref": "#/components/schemas/Job"}}},
        "Job": {"type": "object", "required": ["id", "kind", "state", "done", "queued"], "properties": {
            "id": s("string"),
            "kind": {"type": "object", "properties": {"type": {"type": "string", "enum": ["reconcile_profile"]}, "profile_id": s("string"), "reason": {"type": "string", "enum": ["assign", "unassign", "update", "push", "delete"]}}},
            "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
            "total": {"type": ["integer", "null"], "description": "Devices in all, once a node has counted them."},
            "done": s("integer"), "queued": s("integer"),
            "errors": {"type": "array", "items": s("string")},
            "actor": s("string"), "created_at": s("integer"), "updated_at": s("integer"), "finished_at": ns("integer"),
            "url": s("string")}},
        "JobAccepted": {"type": "object", "properties": {"job": {"$ref": "#/components/schemas/Job"}}},
        "JobPage": {"type": "object", "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}, "next": ns("string")}},
        "ProfileStatus": {"type": "object", "properties": {
            "profile_id": s("string"), "device_id": s("string"), "version": s("integer"),
            "status": {"type": "string", "enum": ["pending", "verifying", "applied", "failed", "not_applicable", "removing", "removed"]},
            "reason": ns("string"),
            "failures": {"type": "array", "description": "Commands not applied: the device's code, the command's state, and for an Atomic the nested LocURIs that failed or were rolled back (216).", "items": {"type": "object", "properties": {
                "command_id": s("string"), "targets": {"type": "array", "items": s("string")}, "status": ns("integer"),
                "state": {"$ref": "#/components/schemas/CommandState"},
                "failed": {"type": "array", "items": {"type": "object", "properties": {"target": s("string"), "verb": s("string"), "status": ns("integer")}}},
                "error": ns("string")}}},
            "command_ids": {"type": "array", "items": s("string")},
            "updated_at": s("integer")}},
        "StatusPage": {"type": "object", "properties": {"statuses": {"type": "array", "items": {"$ref": "#/components/schemas/ProfileStatus"}}, "next": ns("string")}},
        "DeviceProfiles": {"type": "object", "properties": {"profiles": {"type": "array", "items": {"$ref": "#/components/schemas/ProfileStatus"}}}}
    })
}

/// Adds [`paths`] and [`schemas`] to an OpenAPI document.
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
