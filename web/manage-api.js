// The admin panel's calls (`POST api/manage/<name>`, described in api/openapi.json), all
// with the session cookie. A refusal throws plugin-api.js's PluginError: `message` is the
// sentence to show where the action was.

import { api } from "./plugin-api.js";

const call = (name, body = {}) => api(`api/manage/${name}`, { method: "POST", body });

// The rooms and spaces where the bot is and the signed-in person may invite.
export const listRooms = () => call("rooms");

// One room: its links, bindings, people, invites and audit log.
export const roomDetails = (roomId) => call("room", { room_id: roomId });

// `extra`: { rooms?, name?, uses?, expires?, register? } (only what the admin filled in;
// without `expires` the operator's default applies, "never" is none).
export const createLink = (roomId, extra) => call("links/create", { room_id: roomId, ...extra });

export const revokeLink = (roomId, linkId) =>
  call("links/revoke", { room_id: roomId, link_id: linkId });

export const listProviders = () => call("providers");

export const checkRules = (rules) => call("rules/check", { rules });

// `register`: offer people without a Matrix account one (as `bind --register`).
export const createBinding = (roomId, rules, rooms, register = false) =>
  call("bindings/create", { room_id: roomId, rules, ...(rooms ? { rooms } : {}),
    ...(register ? { register } : {}) });

export const removeBinding = (roomId, binding) =>
  call("bindings/remove", { room_id: roomId, binding });

// `grace`: a duration ("3d"), or "" for none.
export const setPolicy = (roomId, binding, policy, grace) =>
  call("bindings/policy", { room_id: roomId, binding, policy, ...(grace ? { grace } : {}) });

export const recheckNow = (roomId, binding) =>
  call("bindings/recheck", { room_id: roomId, binding });

export const retryInvite = (roomId, userId) =>
  call("invites/retry", { room_id: roomId, user_id: userId });
