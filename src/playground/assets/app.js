// The playground page: picks who you are, polls /play/view for Slack as
// that person sees it (HTML rendered by the server), and sends what they do
// (a command, a press, a modal) to /play/*, where it becomes the signed
// delivery Slack would send the bot. No framework, no build step.
"use strict";

const state = { user: null, seen: "", tab: "messages", polling: false };

function $(id) { return document.getElementById(id); }

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  let answer = {};
  try { answer = await response.json(); } catch (e) { answer = {}; }
  if (!response.ok || answer.ok === false) {
    const why = answer.error || (answer.body && typeof answer.body === "string" ? answer.body : "") || ("HTTP " + response.status);
    showError(why);
  } else {
    showError("");
  }
  refresh();
  return answer;
}

function showError(text) { $("composer-error").textContent = text; }

async function loadPeople() {
  const response = await fetch("/play/people");
  const data = await response.json();
  const select = $("person");
  for (const person of data.people) {
    const option = document.createElement("option");
    option.value = person.id;
    option.textContent = person.name + " (" + person.role + ")";
    select.appendChild(option);
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("as");
  if (wanted && data.people.some((p) => p.id === wanted)) select.value = wanted;
  state.user = select.value;
  select.addEventListener("change", () => {
    state.user = select.value;
    state.seen = "";
    for (const pane in lastShown) delete lastShown[pane];
    history.replaceState(null, "", "#as=" + state.user);
    if (state.tab === "home") post("/play/home", { as: state.user });
    refresh();
  });
}

let refreshing = null;
async function refresh() {
  if (!state.user) return;
  if (refreshing) { refreshing.again = true; return; }
  refreshing = { again: false };
  try {
    const user = state.user;
    const url = "/play/view?as=" + encodeURIComponent(user) + "&seen=" + encodeURIComponent(state.seen);
    const response = await fetch(url);
    if (response.status === 200) {
      const view = await response.json();
      // Someone else picked meanwhile: this view is not theirs.
      if (user === state.user) show(view);
    }
  } catch (e) {
    showError("the playground does not answer; is it still running?");
  } finally {
    const again = refreshing.again;
    refreshing = null;
    if (again) refresh();
  }
}

// Replaces what changed, keeping what the person is typing in a modal.
const lastShown = {};
function show(view) {
  state.seen = view.version;
  for (const pane of ["dm", "audit", "home", "target"]) {
    if (lastShown[pane] !== view[pane]) {
      $(pane).innerHTML = view[pane];
      lastShown[pane] = view[pane];
    }
  }
  if (lastShown.modal !== view.modal) {
    const modal = $("modal");
    const typed = modalValues();
    const open = modal.querySelector(".modal");
    const openId = open && open.dataset.viewId;
    modal.innerHTML = view.modal;
    lastShown.modal = view.modal;
    const now = modal.querySelector(".modal");
    if (now && now.dataset.viewId === openId) restoreModalValues(typed);
  }
  document.body.dataset.version = view.version;
}

async function poll() {
  for (;;) {
    await refresh();
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

// The inputs of the open modal or Home tab as Slack's view.state.values.
function viewValues(root) {
  const values = {};
  if (!root) return values;
  for (const field of root.querySelectorAll("[data-kind]")) {
    const block = field.closest(".block");
    if (!block || !block.classList.contains("block-input")) continue;
    const blockId = block.dataset.blockId;
    const actionId = field.dataset.actionId;
    values[blockId] = values[blockId] || {};
    if (field.dataset.kind === "static_select") {
      const option = field.selectedOptions[0];
      values[blockId][actionId] = {
        type: "static_select",
        selected_option: field.value ? { text: { type: "plain_text", text: option.textContent, emoji: true }, value: field.value } : null,
      };
    } else if (field.dataset.kind === "datepicker") {
      values[blockId][actionId] = { type: "datepicker", selected_date: field.value || null };
    } else if (field.dataset.kind === "datetimepicker") {
      values[blockId][actionId] = {
        type: "datetimepicker",
        selected_date_time: field.value ? Math.floor(new Date(field.value).getTime() / 1000) : null,
      };
    } else if (field.dataset.kind === "users_select") {
      values[blockId][actionId] = { type: "users_select", selected_user: field.value || null };
    } else {
      values[blockId][actionId] = { type: field.dataset.kind, value: field.value === "" ? null : field.value };
    }
  }
  return values;
}

// What the person typed into the open modal (fields they touched only, so
// an initial value the bot sets in an update is kept).
function modalValues() {
  const fields = {};
  for (const field of $("modal").querySelectorAll("[data-kind][data-typed]")) {
    fields[field.closest(".block").dataset.blockId + "/" + field.dataset.actionId] = field.value;
  }
  return fields;
}

document.addEventListener("input", (event) => {
  if (event.target.dataset && event.target.dataset.kind) event.target.dataset.typed = "1";
});

function restoreModalValues(fields) {
  for (const field of $("modal").querySelectorAll("[data-kind]")) {
    const key = field.closest(".block").dataset.blockId + "/" + field.dataset.actionId;
    // A select the bot just changed (initial_option) keeps the bot's choice.
    if (key in fields && field.dataset.kind !== "static_select") {
      field.value = fields[key];
      field.dataset.typed = "1";
    }
  }
}

// Where an element is: a message (channel, ts) or a view (modal, Home).
function placeOf(element) {
  const message = element.closest(".message[data-channel]");
  if (message) return { channel: message.dataset.channel, ts: message.dataset.ts };
  const view = element.closest(".view[data-view-id]");
  if (view) return { view_id: view.dataset.viewId, values: viewValues(view) };
  return null;
}

function act(element, selected) {
  const place = placeOf(element);
  const block = element.closest(".block");
  if (!place || !block) return;
  const body = Object.assign({
    as: state.user,
    block_index: Number(block.dataset.blockIndex),
    action_id: element.dataset.actionId,
  }, place);
  if (selected !== undefined) body.selected = selected;
  return post("/play/action", body);
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("button");
  if (!target) return;
  if (target.id === "modal-submit") {
    const modal = target.closest(".modal");
    post("/play/submit", { as: state.user, view_id: modal.dataset.viewId, values: viewValues(modal) });
  } else if (target.id === "modal-cancel") {
    post("/play/cancel", { as: state.user, view_id: target.closest(".modal").dataset.viewId });
  } else if (target.dataset.tab) {
    selectTab(target.dataset.tab);
  } else if (target.dataset.actionId) {
    target.disabled = true;
    Promise.resolve(act(target)).finally(() => { target.disabled = false; });
  }
});

document.addEventListener("change", (event) => {
  const select = event.target;
  if (!(select instanceof HTMLSelectElement) || !select.dataset.actionId) return;
  const inInput = select.closest(".block-input");
  // An input's select only tells the bot when it asks to be told (dispatch_action).
  if (inInput && !("dispatch" in select.dataset)) return;
  if (select.value) act(select, select.value);
});

function selectTab(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll(".tab")) button.classList.toggle("active", button.dataset.tab === tab);
  $("messages").classList.toggle("hidden", tab !== "messages");
  $("home").classList.toggle("hidden", tab !== "home");
  if (tab === "home") post("/play/home", { as: state.user });
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("composer-text").value.trim();
  if (!text) return;
  if (!text.startsWith("/access")) {
    showError("Only the /access command exists here, e.g. /access request billing-admin 2h month end");
    return;
  }
  $("composer-text").value = "";
  post("/play/command", { as: state.user, text: text });
});

loadPeople().then(poll);
