// The old system's push stack, for loadtests' push benchmark (agora-bench-push): a Socket.IO 4
// server with its Redis adapter. A client connects with `?user=<id>` (or `auth: {user}`) and
// joins the room `user:<id>`; whatever is emitted to that room through the adapter, from any
// process (another server or emitter.js), reaches it. Several servers may run side by side
// with the same SIO_KEY: the classic adapter pattern-subscribes every server to every
// broadcast and each delivers to its own sockets.
//
//   SIO_PORT=9500 SIO_KEY=benchpush-sio REDIS_URL=redis://127.0.0.1:6379 node server.js
//
// Listens on 127.0.0.1 only. Prints one JSON line {"ready":true,...} on stdout once it listens
// and the adapter's Redis connections are up; exits on SIGTERM/SIGINT or when stdin closes
// (so it never outlives the benchmark that started it).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.env.SIO_PORT || 9500);
const key = process.env.SIO_KEY || "socket.io";
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const host = "127.0.0.1";

function loopback(url) {
  try {
    const h = new URL(url).hostname;
    return h === "localhost" || h === "[::1]" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
  } catch {
    return false;
  }
}

async function main() {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad SIO_PORT ${process.env.SIO_PORT}`);
  if (!loopback(redisUrl)) throw new Error(`${redisUrl}: load tests only use loopback addresses`);
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (e) => console.error(`redis: ${e.message}`));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    res.writeHead(404).end();
  });
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(pub, sub, { key }),
  });
  let open = 0;
  io.on("connection", (socket) => {
    const user = String(socket.handshake.auth?.user || socket.handshake.query.user || "");
    if (!user) {
      socket.disconnect(true);
      return;
    }
    socket.join(`user:${user}`);
    open += 1;
    socket.on("disconnect", () => {
      open -= 1;
    });
  });
  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(port, host, resolve);
  });
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, port, key })}\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.error(`socket.io server ${port}: stopping with ${open} sockets open`);
    io.close();
    await Promise.allSettled([pub.quit(), sub.quit()]);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}

main().catch((e) => {
  console.error(`socket.io server: ${e.stack || e}`);
  process.exit(1);
});
