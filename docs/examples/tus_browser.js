// <script type="module"> in a page of your app; tus-js-client from npm.
import * as tus from "tus-js-client";

export function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(file, {
      endpoint: "/streaming/tus/",
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000],
      metadata: { filename: file.name, filetype: file.type },
      // parallelUploads: 2,            // uses the concatenation extension
      onProgress: (sent, total) => onProgress(sent / total),
      onError: reject,
      onSuccess: () => resolve(upload.url),
    });
    // Resume an upload of the same file after a page reload.
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    });
  });
}
