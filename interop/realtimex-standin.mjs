// A RealtimeX stand-in on the official `socket.io` Node server (4.8.4): enough of the
// protocol (gateway-and-realtimex.md B.5) to prove our client talks to a Socket.IO server
// that is not ours. Channels are socket.io rooms; private and presence subscriptions are
// checked as Pusher signatures over `socket.id` (the namespace sid).
//
// The test drives it through one event of its own, `standin:do` {action, …}, answered by
// ack: `publish` (a server-event to a channel), `ask` (an emitWithAck to the client; the
// answer is returned), `ask-channel` (the same with a channel's server-event), `binary` (an
// event with a Buffer), `binary-channel` (a server-event whose data is a Buffer), `kick`
// (socket.disconnect(true), a Socket.IO server disconnect).
//
// Run: SWITCHBOARD_APP_KEY=k SWITCHBOARD_APP_SECRET=s node interop/realtimex-standin.mjs
// It prints `listening <port>` (127.0.0.1, a free port) and runs until stdin closes.

import http from 'node:http';
import crypto from 'node:crypto';
import { Server } from 'socket.io';

const KEY = process.env.SWITCHBOARD_APP_KEY;
const SECRET = process.env.SWITCHBOARD_APP_SECRET;
if (!KEY || !SECRET) throw new Error('SWITCHBOARD_APP_KEY and SWITCHBOARD_APP_SECRET are required');

const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ['websocket'], pingInterval: 300, pingTimeout: 400 });

io.use((socket, next) => {
  if (socket.handshake.query.api_key === KEY) return next();
  const error = new Error('Invalid API key');
  error.data = { code: 4001 };
  return next(error);
});

const sign = (text) => `${KEY}:${crypto.createHmac('sha256', SECRET).update(text).digest('hex')}`;
const members = new Map(); // channel -> Map(user_id -> user_info)

io.on('connection', (socket) => {
  const joined = new Map(); // channel -> user_id (presence)

  socket.on('realtimex:subscribe', ({ channel, auth, channel_data: channelData } = {}) => {
    const needsAuth = channel.startsWith('private-') || channel.startsWith('presence-');
    const signed = channel.startsWith('presence-') ? `${socket.id}:${channel}:${channelData}` : `${socket.id}:${channel}`;
    if (needsAuth && auth !== sign(signed)) {
      socket.emit('realtimex_internal:subscription_error', { channel, type: 'AuthError', error: 'Invalid signature', status: 401 });
      return;
    }
    socket.join(channel);
    const confirmation = { channel, socket_id: socket.id };
    if (channel.startsWith('presence-')) {
      const { user_id: userId, user_info: userInfo = null } = JSON.parse(channelData);
      const roster = members.get(channel) ?? new Map();
      members.set(channel, roster);
      roster.set(String(userId), userInfo);
      joined.set(channel, String(userId));
      const ids = [...roster.keys()];
      confirmation.presence = { count: ids.length, ids, hash: Object.fromEntries(roster) };
      socket.to(channel).emit('server-event', {
        channel,
        event: 'realtimex_internal:member_added',
        data: { user_id: String(userId), user_info: userInfo },
      });
    }
    socket.emit('realtimex_internal:subscription_succeeded', confirmation);
  });

  socket.on('client-event', ({ channel, event, data } = {}) => {
    if (!socket.rooms.has(channel)) return;
    const body = { channel, event, data };
    if (joined.has(channel)) body.user_id = joined.get(channel);
    socket.to(channel).emit('server-event', body);
  });

  socket.on('standin:do', async (request, answer) => {
    switch (request.action) {
      case 'publish':
        io.to(request.channel).emit('server-event', { channel: request.channel, event: request.event, data: request.data });
        return answer({ ok: true });
      case 'ask': {
        const reply = await socket.timeout(2000).emitWithAck('server-question', { q: request.q });
        return answer({ ok: true, reply });
      }
      case 'ask-channel': {
        const reply = await socket
          .timeout(2000)
          .emitWithAck('server-event', { channel: request.channel, event: 'asked', data: { q: request.q } });
        return answer({ ok: true, reply });
      }
      case 'binary-channel':
        socket.emit('server-event', { channel: request.channel, event: 'blob', data: Buffer.from([4, 5, 6]) });
        return answer({ ok: true });
      case 'binary':
        socket.emit('file', { name: 'blob', body: Buffer.from([1, 2, 3]) });
        return answer({ ok: true });
      case 'kick':
        answer({ ok: true });
        return setTimeout(() => socket.disconnect(true), 50);
      default:
        return answer({ ok: false, message: `unknown action ${request.action}` });
    }
  });

  socket.on('disconnect', () => {
    for (const [channel, userId] of joined) {
      members.get(channel)?.delete(userId);
      io.to(channel).emit('server-event', { channel, event: 'realtimex_internal:member_removed', data: { user_id: userId } });
    }
  });
});

httpServer.listen(0, '127.0.0.1', () => {
  console.log(`listening ${httpServer.address().port}`);
});
process.stdin.on('end', () => {
  io.close();
  process.exit(0);
});
process.stdin.resume();
