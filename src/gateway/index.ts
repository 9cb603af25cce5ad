export { startGateway, type StartGatewayOptions, type GatewayHandle, type PolicySourceLike } from './gateway.ts';
export {
  createAgentToken,
  rotateAgentToken,
  revokeAgentTokens,
  revokeAgentToken,
  listAgentTokens,
  hashToken,
  isWellFormedToken,
  TokenStore,
  TOKEN_PREFIX,
  type AgentTokenInfo,
  type AuthResult,
} from './tokens.ts';
export {
  approveToolPin,
  PinStore,
  pinHash,
  pinDefinition,
  type PinRow,
  type PinApproval,
  type PinObservation,
  type PinnableTool,
} from './pins.ts';
export { GatewayPipeline, refusal, type PipelineOptions, type CallInput } from './pipeline.ts';
export {
  UpstreamManager,
  backoffMs,
  type Catalogue,
  type Upstreams,
  type UpstreamTool,
  type UpstreamManagerOptions,
} from './upstream.ts';
export { isAllowedHost, isAllowedOrigin, hostOf, MCP_PATH } from './http.ts';
export { runBridge, type BridgeOptions } from './bridge.ts';
export { httpFetch, type HttpFetch, type HttpFetchOptions } from './http-fetch.ts';
