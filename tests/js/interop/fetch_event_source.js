// Bundled by esbuild (tests/interop/conftest.py) into an IIFE: window.FES.
export { fetchEventSource } from "@microsoft/fetch-event-source";
