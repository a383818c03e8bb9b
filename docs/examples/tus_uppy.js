// Uppy's dashboard with its tus plugin (npm: @uppy/core @uppy/dashboard @uppy/tus).
import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import Tus from "@uppy/tus";

const uppy = new Uppy({ restrictions: { maxFileSize: 4 * 1024 ** 3 } })
  .use(Dashboard, { inline: true, target: "#uploader" })
  .use(Tus, { endpoint: "/streaming/tus/", chunkSize: 8 * 1024 * 1024 });

uppy.on("complete", (result) => console.log("uploaded", result.successful));
