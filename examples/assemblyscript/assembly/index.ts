// Example weir filter in AssemblyScript (@solo-io/proxy-runtime 0.1.8, which builds
// only with assemblyscript 0.14.x): adds `x-as: 1` to every response.
//
// Build: `bash scripts/build-filters.sh` (or `npm ci && npm run asbuild` here);
// output: target/filters/example_as.wasm.
//
// The runtime finds the root context factory by the `plugin_root_id` property,
// which weir sets to the filter's `root_id` (default: the filter's name). So that
// this module works under any name, proxy_on_context_create below registers the
// factory under whatever root id the host reports before delegating to the runtime.

import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
} from "@solo-io/proxy-runtime";
import { get_property } from "@solo-io/proxy-runtime/runtime";
import { proxy_on_context_create as runtime_on_context_create } from "@solo-io/proxy-runtime/exports";

// Every export of the runtime except proxy_on_context_create, which is wrapped below.
export {
  proxy_abi_version_0_2_0, proxy_on_vm_start, proxy_validate_configuration, proxy_on_configure,
  proxy_on_tick, proxy_on_foreign_function, proxy_on_queue_ready,
  proxy_on_request_headers, proxy_on_request_body, proxy_on_request_trailers, proxy_on_request_metadata,
  proxy_on_response_headers, proxy_on_response_body, proxy_on_response_trailers, proxy_on_response_metadata,
  proxy_on_http_call_response, proxy_on_grpc_receive_initial_metadata, proxy_on_grpc_trailing_metadata,
  proxy_on_grpc_receive, proxy_on_grpc_close, proxy_on_done, proxy_on_log, proxy_on_delete,
} from "@solo-io/proxy-runtime/exports";
export { malloc, free } from "@solo-io/proxy-runtime/malloc";

class AddHeaderRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

class AddHeader extends Context {
  constructor(context_id: u32, root_context: AddHeaderRoot) {
    super(context_id, root_context);
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-as", "1");
    return FilterHeadersStatusValues.Continue;
  }
}

function newRoot(context_id: u32): RootContext {
  return new AddHeaderRoot(context_id);
}

registerRootContext(newRoot, "example_as");

export function proxy_on_context_create(context_id: u32, root_context_id: u32): void {
  if (root_context_id == 0) {
    const raw = get_property("plugin_root_id");
    const root_id = raw.byteLength == 0 ? "" : String.UTF8.decode(raw);
    registerRootContext(newRoot, root_id);
  }
  runtime_on_context_create(context_id, root_context_id);
}
