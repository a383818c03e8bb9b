// The reference tus server for benchmarks/tus.py: @tus/server with
// @tus/file-store, as their README sets them up, on 127.0.0.1.
//   node benchmarks/node/server.cjs <folder> <port>
// Install first: npm ci --prefix benchmarks/node
"use strict";
const http = require("node:http");
const { Server } = require("@tus/server");
const { FileStore } = require("@tus/file-store");

const [folder, port] = process.argv.slice(2);
const tus = new Server({ path: "/files", datastore: new FileStore({ directory: folder }) });
const server = http.createServer((req, res) => {
  if (req.url === "/health") {
    res.end("ok");
    return;
  }
  tus.handle(req, res);
});
server.listen(Number(port), "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
