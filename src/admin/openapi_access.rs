//! OpenAPI paths and schemas of the token, invitation and bulk-package routes, and the fields
//! they add to existing schemas (kept apart from `openapi.rs`; merged by [`extend`]).

use serde_json::{json, Value};

use super::openapi::{body, common, err, ok, page_params, param};

fn paths() -> Value {
    json!({
        "/api/v1/tokens": {
            "post": {
                "operationId": "createToken",
                "summary": "Create a named admin, read-only or metrics token; its secret is shown once",
                "requestBody": body("NewToken"),
                "responses": common(json!({
                    "201": ok("Created; `token` is not shown again.", "CreatedToken"),
                    "400": err("Invalid name, role or JSON."),
                    "409": err("A token of that name exists (or the name is `bootstrap`).")
                }))
            },
            "get": {
                "operationId": "listTokens",
                "summary": "Named tokens, ordered by name (never their secrets)",
                "parameters": page_params("The `next` of the previous page (a name)."),
                "responses": common(json!({
                    "200": ok("One page.", "TokenList"),
                    "400": err("Invalid limit or unknown query parameter.")
                }))
            }
        },
        "/api/v1/tokens/{token_name}": {
            "delete": {
                "operationId": "revokeToken",
                "summary": "Revoke a named token (refused from the next request on)",
                "parameters": [param("token_name", "The token's name.")],
                "responses": common(json!({
                    "204": {"description": "Revoked."},
                    "404": err("Unknown token.")
                }))
            }
        },
        "/api/v1/invitations": {
            "post": {
                "operationId": "createInvitation",
                "summary": "Invite an existing, enabled user to enroll: a one-time, expiring landing page and deep link, optionally e-mailed",
                "requestBody": body("NewInvitation"),
                "responses": common(json!({
                    "201": ok("Created.", "CreatedInvitation"),
                    "400": err("Invalid UPN, expiry or JSON."),
                    "404": err("Unknown user."),
                    "409": err("The user is disabled.")
                }))
            },
            "get": {
                "operationId": "listInvitations",
                "summary": "Invitations, oldest first, with their state",
                "parameters": page_params("The `next` of the previous page."),
                "responses": common(json!({
                    "200": ok("One page.", "InvitationList"),
                    "400": err("Invalid limit or unknown query parameter.")
                }))
            }
        },
        "/api/v1/invitations/{invitation_id}": {
            "delete": {
                "operationId": "revokeInvitation",
                "summary": "Revoke an invitation (its landing page then answers 410)",
                "parameters": [param("invitation_id", "The invitation id.")],
                "responses": common(json!({
                    "204": {"description": "Revoked."},
                    "404": err("Unknown invitation."),
                    "409": err("Already used or revoked.")
                }))
            }
        },
        "/api/v1/bulk-enrollment/package": {
            "get": {
                "operationId": "bulkPackage",
                "summary": "Windows Configuration Designer customizations XML for a bulk account, with a freshly minted package secret (admin tokens only: it creates a credential)",
                "parameters": [{"name": "upn", "in": "query", "required": true, "description": "A `windows-bulkenroll…` account.", "schema": {"type": "string"}}],
                "responses": common(json!({
                    "200": {"description": "The customizations document; header `X-Winmdm-Package-Id` carries the package id.", "content": {"application/xml": {"schema": {"type": "string"}}}},
                    "400": err("Missing UPN, unknown query parameter, or not a bulk account."),
                    "404": err("Unknown user."),
                    "409": err("The account is disabled.")
                }))
            }
        },
        "/api/v1/bulk-enrollment/packages/{package_id}": {
            "delete": {
                "operationId": "revokeBulkPackage",
                "summary": "Revoke a package secret: devices applying that package can no longer enroll",
                "parameters": [param("package_id", "The package id (its PackageConfig GUID).")],
                "responses": common(json!({
                    "204": {"description": "Revoked."},
                    "404": err("Unknown package.")
                }))
            }
        },
        "/api/v1/backup": {
            "post": {
                "operationId": "createBackup",
                "summary": "Stream a backup archive (tar): a consistent snapshot of the store (embedded store only) and the data directory's key files, sealed when a passphrase is given; admin tokens only, one at a time",
                "requestBody": body("NewBackup"),
                "responses": common(json!({
                    "200": {
                        "description": "The archive, streamed; `X-Winmdm-Store-Included: false` on PostgreSQL (back the database up with pg_dump). A transfer that ends early has no manifest and is refused by `winmdm restore`.",
                        "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}
                    },
                    "400": err("Invalid JSON or passphrase length."),
                    "409": err("A backup is already running on this node.")
                }))
            }
        }
    })
}

fn schemas() -> Value {
    json!({
        "NewBackup": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "passphrase": {"type": "string", "minLength": 12, "maxLength": 1024, "description": "Seal the key files (argon2id + AES-256-GCM); needed again to restore."}
            }
        },
        "NewToken": {
            "type": "object", "additionalProperties": false, "required": ["name", "role"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
                "role": {"type": "string", "enum": ["admin", "read-only", "metrics"]}
            }
        },
        "Token": {
            "type": "object", "required": ["name", "role", "created_at", "created_by"],
            "properties": {
                "name": {"type": "string"},
                "role": {"type": "string", "enum": ["admin", "read-only", "metrics"]},
                "created_at": {"type": "integer", "format": "int64"},
                "created_by": {"type": "string"}
            }
        },
        "CreatedToken": {
            "allOf": [{"$ref": "#/components/schemas/Token"}, {
                "type": "object", "required": ["token"],
                "properties": {"token": {"type": "string", "description": "`wmdm_<name>_<secret>`: the bearer token. Only its digest is stored."}}
            }]
        },
        "TokenList": {
            "type": "object", "required": ["tokens", "next"],
            "properties": {
                "tokens": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}},
                "next": {"type": "string", "nullable": true}
            }
        },
        "NewInvitation": {
            "type": "object", "additionalProperties": false, "required": ["upn"],
            "properties": {
                "upn": {"type": "string"},
                "expires_in_hours": {"type": "integer", "minimum": 1, "maximum": super::invitations::MAX_HOURS, "default": super::invitations::DEFAULT_HOURS},
                "send_email": {"type": "boolean", "default": false, "description": "E-mail the message to the UPN (needs --smtp-url)."}
            }
        },
        "CreatedInvitation": {
            "type": "object", "required": ["id", "upn", "expires_at", "deep_link", "landing_url", "message", "sent"],
            "properties": {
                "id": {"type": "string"},
                "upn": {"type": "string"},
                "expires_at": {"type": "integer", "format": "int64"},
                "deep_link": {"type": "string", "example": "ms-device-enrollment:?mode=mdm&username=alice%40example.com&servername=https://mdm.example.com/EnrollmentServer/Discovery.svc"},
                "landing_url": {"type": "string", "description": "One-time page on the public listener; shown only here."},
                "message": {"type": "string", "description": "Plain-text e-mail body an admin can paste."},
                "sent": {"type": "boolean"},
                "send_error": {"type": "string", "description": "Why the e-mail was not sent (when send_email was asked)."}
            }
        },
        "Invitation": {
            "type": "object", "required": ["id", "upn", "state", "created_at", "expires_at", "created_by", "sent"],
            "properties": {
                "id": {"type": "string"},
                "upn": {"type": "string"},
                "state": {"type": "string", "enum": ["open", "used", "revoked", "expired"]},
                "created_at": {"type": "integer", "format": "int64"},
                "expires_at": {"type": "integer", "format": "int64"},
                "created_by": {"type": "string"},
                "sent": {"type": "boolean"},
                "revoked_at": {"type": "integer", "format": "int64", "nullable": true},
                "used_at": {"type": "integer", "format": "int64", "nullable": true},
                "used_by_device": {"type": "string", "nullable": true}
            }
        },
        "InvitationList": {
            "type": "object", "required": ["invitations", "next"],
            "properties": {
                "invitations": {"type": "array", "items": {"$ref": "#/components/schemas/Invitation"}},
                "next": {"type": "string", "nullable": true}
            }
        },
        "QueueSummary": {
            "type": "object", "required": ["pending", "sent", "done", "failed", "not_applied", "oldest_pending_at"],
            "properties": {
                "pending": {"type": "integer"}, "sent": {"type": "integer"},
                "done": {"type": "integer"}, "failed": {"type": "integer"},
                "not_applied": {"type": "integer", "description": "Answered 214 (cancelled), 215 (not executed) or 216 (rolled back)."},
                "oldest_pending_at": {"type": "integer", "format": "int64", "nullable": true}
            }
        },
        "Certificate": {
            "type": "object", "required": ["serial", "thumbprint", "not_after"],
            "properties": {
                "serial": {"type": "string"}, "thumbprint": {"type": "string"},
                "not_after": {"type": "integer", "format": "int64"},
                "issued_at": {"type": "integer", "format": "int64", "nullable": true},
                "revoked_at": {"type": "integer", "format": "int64", "nullable": true}
            }
        },
        "BulkPackage": {
            "type": "object", "required": ["package_id", "created_at", "created_by"],
            "properties": {
                "package_id": {"type": "string"},
                "created_at": {"type": "integer", "format": "int64"},
                "created_by": {"type": "string"}
            }
        }
    })
}

/// Adds these routes and schemas to the document, and their fields to existing schemas.
pub fn extend(doc: &mut Value) {
    if let (Some(p), Value::Object(extra)) = (doc["paths"].as_object_mut(), paths()) {
        p.extend(extra);
    }
    let s = &mut doc["components"]["schemas"];
    if let (Some(m), Value::Object(extra)) = (s.as_object_mut(), schemas()) {
        m.extend(extra);
    }
    if let Some(props) = s["Device"]["properties"].as_object_mut() {
        props.insert(
            "queue".into(),
            json!({"$ref": "#/components/schemas/QueueSummary", "description": "Only in GET /api/v1/devices/{device_id}."}),
        );
        props.insert(
            "certificate".into(),
            json!({"$ref": "#/components/schemas/Certificate", "description": "Only in GET /api/v1/devices/{device_id}."}),
        );
    }
    if let Some(props) = s["UserDetail"]["properties"].as_object_mut() {
        props.insert(
            "bulk_packages".into(),
            json!({"type": "array", "items": {"$ref": "#/components/schemas/BulkPackage"}, "description": "Unrevoked provisioning-package secrets of a bulk account (ids only)."}),
        );
    }
    s["AuditEntry"]["properties"]["actor"]["description"] =
        "Name of the token: `bootstrap` or a named token.".into();
    doc["components"]["securitySchemes"]["bearer"]["description"] =
        "The bootstrap token (WINMDM_ADMIN_TOKEN or DATA_DIR/admin-token) or a named token `wmdm_<name>_<secret>` (POST /api/v1/tokens); read-only tokens may only GET; metrics tokens may only read GET /metrics (outside /api/v1).".into();
}
