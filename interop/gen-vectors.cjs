// Produces crates/switchboard-protocol/tests/vectors/pusher-sdk.json with the official
// `pusher` Node server SDK, so the Rust signature code is checked against upstream output.
// Run: node interop/gen-vectors.cjs  (from the repository root, after `npm ci --prefix interop`)
"use strict";
const path = require("path");
const fs = require("fs");
const crypto = require("crypto");
const Pusher = require("pusher");
const { createSignedQueryString } = require("pusher/lib/requests");
const Token = require("pusher/lib/token");

const appId = "1001";
const key = "app-key";
const secret = "app-secret";
const masterKey = Buffer.alloc(32, 7).toString("base64");
const pusher = new Pusher({ appId, key, secret, encryptionMasterKeyBase64: masterKey });
const token = new Token(key, secret);

const channelAuth = [
  ["1234.5678", "private-orders.1", undefined],
  ["99.1", "private-encrypted-secret", undefined],
  ["1.2", "presence-chat.lobby", { user_id: "42", user_info: { name: "Ada" } }],
  ["17.42", "presence-room", { user_id: 7 }],
  ["17.42", "private-a_b=c@d,e.f;g", undefined],
].map(([socket_id, channel, data]) => ({
  socket_id,
  channel,
  presence_data: data ?? null,
  response: pusher.authorizeChannel(socket_id, channel, data),
}));

const userAuth = [
  ["1234.5678", { id: "42", user_info: { name: "Ada" } }],
  ["5.6", { id: "u-1", watchlist: ["a", "b"] }],
].map(([socket_id, user]) => ({ socket_id, user, response: pusher.authenticateUser(socket_id, user) }));

// Freeze the clock so auth_timestamp is reproducible.
const realNow = Date.now;
Date.now = () => 1700000000 * 1000;
const httpRequests = [
  { method: "POST", path: `/apps/${appId}/events`, body: JSON.stringify({ name: "e", data: "{\"a\":1}", channels: ["c1", "c2"] }) },
  { method: "POST", path: `/apps/${appId}/batch_events`, body: JSON.stringify({ batch: [{ name: "e", channel: "c", data: "x" }] }) },
  { method: "GET", path: `/apps/${appId}/channels`, params: { filter_by_prefix: "presence-", info: "user_count" } },
  { method: "GET", path: `/apps/${appId}/channels/presence-room/users` },
  { method: "GET", path: `/apps/${appId}/channels/my channel`, params: { info: "subscription_count,user_count" } },
].map((r) => ({ ...r, body: r.body ?? null, params: r.params ?? {}, query: createSignedQueryString(token, r) }));
Date.now = realNow;

const webhookBodies = [
  JSON.stringify({ time_ms: 1700000000000, events: [{ name: "channel_occupied", channel: "c" }] }),
  "{}",
];
const webhooks = webhookBodies.map((body) => {
  const signature = token.sign(body);
  const valid = pusher.webhook({
    headers: { "x-pusher-key": key, "x-pusher-signature": signature, "content-type": "application/json" },
    rawBody: body,
  }).isValid();
  if (!valid) throw new Error("SDK rejected its own webhook signature");
  return { body, key, signature };
});

const sharedSecrets = ["private-encrypted-secret", "private-encrypted-cache-x"].map((channel) => ({
  channel,
  shared_secret: pusher.channelSharedSecret(channel).toString("base64"),
}));

// End-to-end encrypted events exactly as the SDK's trigger() encrypts them (random nonce).
const nacl = require("tweetnacl");
const naclUtil = require("tweetnacl-util");
const encryptedEvents = [
  ["private-encrypted-secret", { message: "hello", n: 1 }],
  ["private-encrypted-cache-x", "a plain string"],
].map(([channel, data]) => {
  const nonce = nacl.randomBytes(24);
  const ciphertext = nacl.secretbox(naclUtil.decodeUTF8(JSON.stringify(data)), nonce, pusher.channelSharedSecret(channel));
  return {
    channel,
    data: JSON.stringify(data),
    payload: JSON.stringify({ nonce: naclUtil.encodeBase64(nonce), ciphertext: naclUtil.encodeBase64(ciphertext) }),
  };
});

const md5 = ["", "{\"name\":\"e\"}"].map((s) => ({ input: s, md5: crypto.createHash("md5").update(s).digest("hex") }));

const out = {
  generated_by: `pusher (Node SDK) ${require("pusher/package.json").version}`,
  app: { id: appId, key, secret, encryption_master_key_base64: masterKey },
  channel_auth: channelAuth,
  user_auth: userAuth,
  http_requests: httpRequests,
  webhooks,
  shared_secrets: sharedSecrets,
  encrypted_events: encryptedEvents,
  md5,
};
const dest = path.join(__dirname, "..", "crates", "switchboard-protocol", "tests", "vectors", "pusher-sdk.json");
fs.writeFileSync(dest, JSON.stringify(out, null, 2) + "\n");
console.log("wrote", dest);
