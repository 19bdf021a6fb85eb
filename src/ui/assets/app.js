// winmdm console: shows every <time datetime> in the admin's local time (UTC stays in the
// title). Served from the binary; no inline script anywhere (the CSP forbids it).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d.getTime())) {
      el.title = el.textContent;
      el.textContent = fmt.format(d);
    }
  });
});

// The Autopilot profile form: the seed's rules between settings, shown while the admin fills the
// form (the server checks the same rules again on save: autopilot::profile::validate).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("ap-profile");
  if (!form) { return; }
  function val(id) { var el = document.getElementById("f-" + id); return el ? el.value.trim() : ""; }
  function on(id) { var el = document.getElementById("f-" + id); return !!(el && el.checked); }
  function show(field, msg) {
    var p = document.getElementById("err-" + field);
    var input = document.getElementById("f-" + field);
    if (p) { p.textContent = msg || ""; }
    if (input) { if (msg) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); } }
  }
  function check() {
    var mode = val("deployment_mode"), type = val("device_type"), lang = val("language");
    var e = {};
    if (type === "hololens" && mode !== "self-deploying") {
      e.deployment_mode = "HoloLens profiles must use the self-deploying deployment mode";
    }
    if (on("allow_pre_provisioning") && mode === "self-deploying") {
      e.allow_pre_provisioning = "pre-provisioning is not available with the self-deploying deployment mode; use user-driven or turn pre-provisioning off";
    }
    if (lang !== "" && lang !== "os-default" && !/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(lang)) {
      e.language = "\"" + lang + "\" is not a locale tag such as en-US or fr-FR";
    }
    if (on("auto_configure_keyboard") && (lang === "" || lang === "os-default")) {
      e.auto_configure_keyboard = "the keyboard can only be configured automatically when a language other than the operating system default is set";
    }
    var t = val("device_name_template");
    if (t !== "") {
      var rest = t.replace(/%SERIAL%/g, "S").replace(/%RAND:(\d+)%/g, function (_, n) { return "R".repeat(Math.min(+n, 99)); });
      if (/[^A-Za-z0-9-]/.test(rest)) { e.device_name_template = "use letters, digits, hyphens, %SERIAL% and %RAND:n% only"; }
      else if (rest.length > 15) { e.device_name_template = "the name is longer than 15 characters once expanded"; }
      else if (/^[0-9]+$/.test(t)) { e.device_name_template = "a device name cannot be digits only"; }
    }
    if (val("license_terms") !== "" && mode !== "user-driven") {
      e.license_terms = "showing or hiding the Microsoft Software License Terms is only possible in user-driven mode";
    }
    ["deployment_mode", "allow_pre_provisioning", "language", "auto_configure_keyboard", "device_name_template", "license_terms"].forEach(function (f) { show(f, e[f]); });
    return Object.keys(e).length === 0;
  }
  form.addEventListener("input", check);
  form.addEventListener("change", check);
  check();
});

// "Copy" buttons: copy the value of the element named by data-copy.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button.copy[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      var el = document.getElementById(b.getAttribute("data-copy"));
      if (!el) { return; }
      el.select();
      var done = function () { b.textContent = "Copied"; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(el.value).then(done, function () { document.execCommand("copy"); done(); });
      } else { document.execCommand("copy"); done(); }
    });
  });
});

// The dynamic-group query editor: while typing, ask the server (the same parser as on save)
// whether the query parses and how many devices it matches now.
document.addEventListener("DOMContentLoaded", function () {
  var q = document.getElementById("g-query");
  var out = document.getElementById("g-preview");
  if (!q || !out) { return; }
  var timer = null;
  function preview() {
    var text = q.value.trim();
    if (text === "") { out.textContent = "Static group: you pick its members."; q.removeAttribute("aria-invalid"); return; }
    fetch("/ui/groups/preview?q=" + encodeURIComponent(text), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        if (p.ok) {
          q.removeAttribute("aria-invalid");
          out.className = "muted";
          out.textContent = p.matching + " of " + p.scanned + " devices match now" + (p.partial ? " (first devices only)" : "") + ".";
        } else {
          q.setAttribute("aria-invalid", "true");
          out.className = "field-error";
          out.textContent = "Column " + p.column + ": " + p.error;
        }
      })
      .catch(function () { out.textContent = ""; });
  }
  q.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(preview, 250); });
  preview();
});

// The Autopilot device form: the seed's rules for user, user-friendly name, device name and
// group tag, shown while typing (the server checks the same rules on save:
// autopilot::devices::DevicePatch::apply).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("ap-device");
  if (!form) { return; }
  function val(id) { var el = document.getElementById("d-" + id); return el ? el.value.trim() : ""; }
  function show(field, msg) {
    var p = document.getElementById("derr-" + field);
    var input = document.getElementById("d-" + field);
    if (p) { p.textContent = msg || ""; }
    if (input) { if (msg) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); } }
  }
  function check() {
    var e = {};
    var user = val("user"), friendly = val("user_friendly_name"), name = val("device_name"), tag = val("group_tag");
    if (user !== "" && !/^[^@\s\/]+@[^@\s\/]+$/.test(user)) { e.user = "\"" + user + "\" is not a user principal name (name@domain)"; }
    if (friendly !== "" && user === "") { e.user_friendly_name = "a user-friendly name can only be set when the device has a user; set user first"; }
    if (name === "" && form.getAttribute("data-had-name") === "true") { e.device_name = "the device name cannot be unset once set; give a new name instead"; }
    else if (name !== "") {
      if (/[^A-Za-z0-9-]/.test(name)) { e.device_name = "use letters, digits and hyphens only"; }
      else if (name.length > 15) { e.device_name = "at most 15 characters (this one has " + name.length + ")"; }
      else if (/^[0-9]+$/.test(name)) { e.device_name = "a device name cannot be digits only"; }
    }
    var max = +(document.getElementById("d-group_tag").getAttribute("data-max") || 128);
    if (Array.from(tag).length > max) { e.group_tag = "group tag must be at most " + max + " characters"; }
    ["user", "user_friendly_name", "device_name", "group_tag"].forEach(function (f) { show(f, e[f]); });
  }
  form.addEventListener("input", check);
  check();
});
