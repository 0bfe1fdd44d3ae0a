// The dashboard's only script: live figures, local times, and actions through the JSON API.
// No framework and no build step: the pages are rendered on the server, and this file adds three behaviours.
//
// 1. Live: the page's [data-live] region is refreshed from the same URL's live fragment (X-Backfill-Live: 1)
//    every few seconds, while the tab is visible and the viewer is not selecting or typing inside the region.
// 2. Times: <time datetime> elements are shown as "3 min ago" and as an absolute time in the viewer's zone.
// 3. Actions: [data-action] buttons and forms call the JSON API with the session's CSRF token, after a
//    confirmation; a bulk action first asks for a dry run and says how many rows it would touch.

const root = document.querySelector('meta[name="backfill-root"]')?.content ?? "";
const csrf = document.querySelector('meta[name="backfill-csrf"]')?.content ?? "";
const refreshSeconds = Number(document.body.dataset.refresh || 5);

// -- times -----------------------------------------------------------------------------------------------

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  timeZoneName: "short",
});
const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];

function ago(date) {
  const seconds = (date.getTime() - Date.now()) / 1000;
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return relative.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

function showTimes(scope) {
  for (const element of scope.querySelectorAll("time[datetime]")) {
    const date = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    const relativeText = document.createElement("span");
    relativeText.className = "ago";
    relativeText.textContent = ago(date);
    const absoluteText = document.createElement("span");
    absoluteText.className = "at";
    absoluteText.textContent = absolute.format(date);
    element.replaceChildren(relativeText, " ", absoluteText); // the space lets a narrow screen wrap between them
    element.title = date.toISOString();
  }
}

// datetime-local inputs hold the viewer's local time without an offset; the API needs one.
function pad(n) { return String(n).padStart(2, "0"); }

function localValue(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function withOffset(value) {
  const date = new Date(value); // a datetime-local value is read in the viewer's zone
  const minutes = -date.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  return `${localValue(date)}${sign}${pad(Math.floor(Math.abs(minutes) / 60))}:${pad(Math.abs(minutes) % 60)}`;
}

function prepareTimeInputs() {
  const query = new URLSearchParams(location.search);
  for (const input of document.querySelectorAll("input[data-local-time]")) {
    const given = query.get(input.name);
    if (given && !Number.isNaN(new Date(given).getTime())) input.value = localValue(new Date(given));
  }
  for (const form of document.querySelectorAll("form[method=get]")) {
    form.addEventListener("submit", () => {
      for (const input of form.querySelectorAll("input[data-local-time]")) {
        if (!input.value) { input.disabled = true; continue; } // no empty parameter in the URL
        const hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = input.name;
        hidden.value = withOffset(input.value);
        input.disabled = true;
        form.append(hidden);
      }
      for (const field of form.querySelectorAll("input:not([type=hidden]), select")) {
        if (!field.value) field.disabled = true; // keep the URL to the filters actually set
      }
    });
  }
}

// -- status ----------------------------------------------------------------------------------------------

function say(message, failed = false) {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = message;
  status.classList.toggle("failed", failed);
  status.setAttribute("role", failed ? "alert" : "status");
}

// -- live regions ----------------------------------------------------------------------------------------

let refreshing = false;

function busy(region) {
  // Never pull the page from under the viewer: a selection, or focus in a field, holds the region still.
  if (region.querySelector("input[type=checkbox]:checked")) return true;
  const focused = document.activeElement;
  return focused && region.contains(focused) && focused.matches("input, select, textarea");
}

function keyOf(element, region) {
  // A selector for the focused link or button in the region, to focus its twin in the refreshed contents.
  if (!element || !region.contains(element)) return null;
  if (element.matches("button[data-action]")) {
    return `button[data-action="${CSS.escape(element.dataset.action)}"][data-url="${CSS.escape(element.dataset.url)}"]` +
      (element.dataset.body ? `[data-body="${CSS.escape(element.dataset.body)}"]` : "");
  }
  if (element.matches("a[href]")) return `a[href="${CSS.escape(element.getAttribute("href"))}"]`;
  return null;
}

async function refresh() {
  // Each page has one live region, and its live fragment is that region's new contents.
  const region = document.querySelector("[data-live]");
  if (refreshing || !region || document.hidden) return;
  refreshing = true;
  const updated = document.querySelector("[data-updated]");
  try {
    const response = await fetch(location.href, { headers: { "X-Backfill-Live": "1" }, credentials: "same-origin" });
    if (response.status === 401) { // the session ended (expired, or the token changed): sign in again
      location.assign(`${root}/login?next=${encodeURIComponent(location.pathname.slice(root.length) + location.search)}`);
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const html = await response.text();
    if (!busy(region)) {
      const fresh = new DOMParser().parseFromString(`<body>${html}</body>`, "text/html").body;
      const focusKey = keyOf(document.activeElement, region);
      region.replaceChildren(...fresh.childNodes);
      showTimes(region);
      if (focusKey) region.querySelector(focusKey)?.focus(); // keyboard users keep their place
    }
    if (updated) updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${refreshSeconds} s.`;
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (error) {
    if (updated) updated.textContent = `Could not refresh (${error.message}); trying again in ${refreshSeconds} s.`;
  } finally {
    refreshing = false;
  }
}

// -- actions ---------------------------------------------------------------------------------------------

async function call(method, url, body) {
  const response = await fetch(`${root}/${url}`, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Backfill-CSRF": csrf, "Accept": "application/json" },
    body: method === "DELETE" && body === undefined ? undefined : JSON.stringify(body ?? {}),
  });
  const text = await response.text();
  let answer = null;
  try { answer = text ? JSON.parse(text) : null; } catch { answer = null; }
  if (!response.ok) {
    const message = answer?.error?.message ?? `HTTP ${response.status}`;
    throw new Error(message);
  }
  return answer;
}

function howMany(answer) {
  // Dry runs answer by endpoint: {count}, {requeued: [...]}, {deleted: [...]}.
  if (typeof answer?.count === "number") return answer.count;
  if (Array.isArray(answer?.requeued)) return answer.requeued.length;
  if (Array.isArray(answer?.deleted)) return answer.deleted.length;
  return null;
}

function bodyOf(element) {
  if (element.dataset.body) return JSON.parse(element.dataset.body);
  if (element.dataset.filter) {
    const filter = Object.fromEntries(Object.entries(JSON.parse(element.dataset.filter)).filter(([, v]) => v !== null));
    return { filter };
  }
  if (element.dataset.select) {
    const region = element.closest("[data-live]") ?? document;
    const ids = [...region.querySelectorAll(`input[type=checkbox][name="${element.dataset.select}"]:checked`)]
      .map((box) => Number(box.value));
    return { ids };
  }
  return undefined;
}

function formBody(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled || field.value === "") continue;
    body[field.name] = field.type === "number" ? Number(field.value) : field.value;
  }
  return body;
}

async function act(element, body) {
  const method = element.dataset.action;
  const url = element.dataset.url;
  let confirmText = element.dataset.confirm ?? "";
  if (body?.ids && body.ids.length === 0) { say("Select at least one row first.", true); return; }
  if (element.dataset.preview) {
    const preview = await call(method, url, { ...body, dry_run: true });
    const count = howMany(preview);
    if (count === 0) { say("Nothing matches: nothing to do."); return; }
    confirmText = confirmText.replaceAll("{count}", String(count));
  }
  if (confirmText && !window.confirm(confirmText)) { say("Nothing was changed."); return; }
  const answer = await call(method, url, body);
  // A bulk cancel by filter acts on the first 10,000 matching jobs and says whether others remain.
  say((element.dataset.done || "Done.") + (answer?.more ? " More jobs match: run it again for the next batch." : ""));
  const then = element.dataset.then || "refresh";
  if (then.startsWith("go:")) {
    location.assign(`${root}/${then.slice(3)}`);
  } else if (then === "reload") {
    location.reload();
  } else {
    for (const box of document.querySelectorAll("[data-live] input[type=checkbox]:checked")) box.checked = false;
    await refresh();
  }
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) {
    event.preventDefault();
    button.disabled = true;
    try { await act(button, bodyOf(button)); } catch (error) { say(error.message, true); } finally { button.disabled = false; }
    return;
  }
  const all = event.target.closest("input[data-select-all]");
  if (all) {
    const region = all.closest("[data-live]") ?? document;
    for (const box of region.querySelectorAll(`input[type=checkbox][name="${all.dataset.selectAll}"]`)) {
      box.checked = all.checked;
    }
  }
});

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-action]");
  if (!form) return;
  event.preventDefault();
  const submit = form.querySelector("[type=submit]");
  if (submit) submit.disabled = true;
  try { await act(form, formBody(form)); form.reset(); } catch (error) { say(error.message, true); } finally {
    if (submit) submit.disabled = false;
  }
});

// -- start -----------------------------------------------------------------------------------------------

showTimes(document);
prepareTimeInputs();
setInterval(refresh, refreshSeconds * 1000);
setInterval(() => showTimes(document), 15000);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
document.body.dataset.refreshed = "0"; // how many live refreshes have landed (the browser tests wait on it)
document.body.dataset.ready = "true";
