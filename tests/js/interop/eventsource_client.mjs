// The `eventsource` npm package against URL (argv[2]): one JSON line
// {type, data, id} on stdout for every event it dispatches, until killed.
// Run by tests/interop (NodeEventSource); cwd tests/js so the import resolves.
import { EventSource } from "eventsource";

const url = process.argv[2];
const source = new EventSource(url);
const print = (e) =>
  process.stdout.write(JSON.stringify({ type: e.type, data: e.data, id: e.lastEventId }) + "\n");
source.onmessage = print;  // events without a name, and any phantom
for (const name of ["tick", "done", "stream-reset", "stream-error"]) {
  source.addEventListener(name, print);
}
source.onerror = () => {};  // it reconnects by itself
// Its reconnect timer is unref()ed: an app keeps Node alive some other way.
setInterval(() => {}, 1 << 30);
