// The Uppy pieces the demo's /uppy page uses, as one ES module: built by
// `bash examples/vendor_uppy.sh` with esbuild from the versions pinned in
// tests/js/package-lock.json into examples/static/uppy/uppy.min.js.
export { default as Uppy } from "@uppy/core";
export { default as DragDrop } from "@uppy/drag-drop";
export { default as Tus } from "@uppy/tus";
