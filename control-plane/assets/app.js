// Tenantry pages: the signup form's address suggestion and availability check, and the live
// provisioning progress. The pages work without it.
"use strict";

function debounce(fn, ms) {
  let timer;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

function signupForm(form) {
  const company = form.querySelector("#company_name");
  const slug = form.querySelector("#slug");
  const status = document.getElementById("slug-status");
  if (!company || !slug || !status) return;
  // The address follows the company name until the customer edits it.
  let edited = slug.value !== "";
  let asked = 0;
  const check = debounce(async () => {
    const ask = ++asked;
    const query = new URLSearchParams({ company: company.value, slug: edited ? slug.value : "" });
    try {
      const response = await fetch("/signup/slug?" + query, { headers: { Accept: "application/json" } });
      const result = await response.json();
      if (ask !== asked) return;
      // Never under the customer's cursor: a suggestion landing while they are in the field
      // (having just emptied it) would be typed after.
      if (!edited && document.activeElement !== slug) slug.value = result.slug || "";
      status.textContent = result.available ? "“" + result.slug + "” is available." : (result.problem || "");
      status.className = "status " + (result.available ? "ok" : "bad");
    } catch (_) {
      if (ask === asked) { status.textContent = ""; status.className = "status"; }
    }
  }, 250);
  company.addEventListener("input", () => { if (!edited) check(); });
  slug.addEventListener("input", () => { edited = slug.value !== ""; check(); });
  if (company.value || slug.value) check();
}

function progressRegion(region) {
  const url = region.dataset.progress;
  // What the server adds once the ERP is ready (the one-time password's button) is rendered by
  // the server: a page loaded before that reloads itself once, when it becomes ready.
  const loadedReady = region.hasAttribute("data-loaded-ready");
  const poll = async () => {
    let done = false;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const progress = await response.json();
        region.querySelector("[data-summary]").textContent = progress.summary;
        region.querySelector("[data-summary]").classList.toggle("notice", progress.waiting_for_cluster);
        for (const step of progress.steps) {
          const item = region.querySelector('[data-step="' + step.key + '"]');
          if (!item) continue;
          item.className = "step state-" + step.state;
          item.querySelector("[data-state]").textContent = step.state_label;
          item.querySelector("[data-detail]").textContent = step.detail;
        }
        const where = region.querySelector("[data-url]");
        const link = region.querySelector("[data-url-link]");
        if (progress.url && where && link) {
          link.href = progress.url;
          link.textContent = progress.url;
          where.hidden = false;
        }
        done = progress.ready;
        if (done && !loadedReady) { window.location.reload(); return; }
      }
    } catch (_) { /* the next poll tries again */ }
    if (!done) setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
}

// The one-time master password: a copy button beside the field.
function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      const status = button.parentElement.querySelector("[data-copy-status]");
      if (!field) return;
      try {
        await navigator.clipboard.writeText(field.value);
        if (status) status.textContent = "Copied.";
      } catch (_) {
        field.select();
        if (status) status.textContent = "Selected: press Ctrl+C (or Cmd+C) to copy.";
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  copyButtons();
  const form = document.querySelector("form[data-signup]");
  if (form) signupForm(form);
  const region = document.querySelector("[data-progress]");
  if (region) progressRegion(region);
});
