// The publishing side of the old stack for the push benchmark: what a Socket.IO server did after
// handling a "send message" command, `io.to("user:<from>").to("user:<to>").emit("message", m)`,
// done by @socket.io/redis-emitter, which publishes into the Redis adapter's channel exactly as
// a server's adapter does (one PUBLISH per emit; every server receives it and delivers to the
// sockets of those rooms it holds).
//
//   SIO_KEY=benchpush-sio REDIS_URL=redis://127.0.0.1:6379 node emitter.js
//
// Reads one message per line on stdin (JSON with at least "from" and "to"), emits it, and
// exits when stdin closes. Prints {"ready":true} once Redis is connected, and a final
// {"emitted":n} line on exit.
"use strict";

const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");

const key = process.env.SIO_KEY || "socket.io";
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379";

async function main() {
  const host = new URL(redisUrl).hostname;
  if (!(host === "localhost" || /^127\.\d+\.\d+\.\d+$/.test(host))) {
    throw new Error(`${redisUrl}: load tests only use loopback addresses`);
  }
  const client = createClient({ url: redisUrl });
  client.on("error", (e) => console.error(`redis: ${e.message}`));
  await client.connect();
  const emitter = new Emitter(client, { key });
  let emitted = 0;
  let bad = 0;
  let rest = "";
  const emitLine = (line) => {
    if (!line) return;
    let m;
    try {
      m = JSON.parse(line);
    } catch {
      bad += 1;
      return;
    }
    if (typeof m.from !== "string" || typeof m.to !== "string") {
      bad += 1;
      return;
    }
    emitter.to(`user:${m.from}`).to(`user:${m.to}`).emit("message", m);
    emitted += 1;
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop();
    for (const line of lines) emitLine(line);
  });
  const finish = async () => {
    emitLine(rest);
    rest = "";
    process.stdout.write(`${JSON.stringify({ emitted, bad })}\n`);
    await client.quit().catch(() => {});
    process.exit(0);
  };
  process.stdin.on("end", finish);
  process.on("SIGTERM", finish);
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, key })}\n`);
}

main().catch((e) => {
  console.error(`emitter: ${e.stack || e}`);
  process.exit(1);
});
