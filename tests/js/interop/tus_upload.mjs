// tus-js-client under Node: upload FILE (argv[3]) to the tus ENDPOINT
// (argv[2]) in CHUNK-byte PATCH requests (argv[4]), retrying through its own
// retryDelays when the server goes away. One JSON line per progress step,
// then {"url": ...} on success or {"error": ...} (exit status 1).
import { readFileSync } from "node:fs";
import * as tus from "tus-js-client";

const [endpoint, path, chunk] = process.argv.slice(2);
const print = (record) => process.stdout.write(JSON.stringify(record) + "\n");
const upload = new tus.Upload(readFileSync(path), {
  endpoint,
  chunkSize: Number(chunk),
  retryDelays: [0, 500, 1000, 1000, 2000, 2000, 3000, 3000, 3000, 3000],
  metadata: { filename: "node.bin", filetype: "application/octet-stream" },
  onProgress: (sent, total) => print({ sent, total }),
  onError: (err) => { print({ error: String(err) }); process.exit(1); },
  onSuccess: () => print({ url: upload.url }),
});
upload.start();
