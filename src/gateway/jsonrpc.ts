import type {
  JSONRPCMessage,
  JSONRPCNotification,
  JSONRPCRequest,
  RequestId,
} from '@modelcontextprotocol/sdk/types.js';

/**
 * What kind of JSON-RPC message this is, for messages already validated
 * (JSONRPCMessageSchema) or made by the SDK's own Protocol: their members
 * tell them apart. The SDK's is*() guards would parse each one again with
 * zod, several times per call.
 */
export const isRequest = (m: JSONRPCMessage): m is JSONRPCRequest => 'method' in m && 'id' in m;
export const isNotification = (m: JSONRPCMessage): m is JSONRPCNotification => 'method' in m && !('id' in m);
export const isAnswer = (m: JSONRPCMessage): m is JSONRPCMessage & { id: RequestId } => 'result' in m || 'error' in m;
