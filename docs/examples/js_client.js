// In a page of your app, or any ES module (Svelte, Vite, plain <script type="module">).
import { StreamingClient, source, channelUrl } from "/streaming/client.js";

// Upload in segments with progress; resumes after a network failure.
const uploads = new StreamingClient("/streaming/uploads");
export async function sendFile(file, bar) {
  const final = await uploads.upload(file, {
    segmentSize: 8 * 1024 * 1024,
    onProgress: (p) => (bar.value = p.loaded / p.total),
  });
  return final; // the server's final JSON, with your upload-completed hook's results
}

// Live MediaRecorder output: each chunk becomes a segment (svelte-stream's shape).
export async function record(stream, onPartial) {
  const id = await uploads.getStarted();
  const recorder = new MediaRecorder(stream);
  const chunks = new ReadableStream({
    start(controller) {
      recorder.ondataavailable = (e) => controller.enqueue(e.data);
      recorder.onstop = () => controller.close();
    },
  });
  recorder.start(1000); // a segment every second
  const done = uploads.send(id, chunks, async (response) => onPartial(await response.json()));
  return { stop: () => recorder.stop(), done };
}

// Events over fetch: reconnects with Last-Event-ID, a Svelte-compatible store.
export const messages = source(channelUrl(["room-1", "news"]), {
  headers: { Authorization: "Bearer ..." },
})
  .select("message")
  .json();
// Svelte: {#each $messages ...}; elsewhere: messages.subscribe((m) => ...)
