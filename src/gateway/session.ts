import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  GetTaskPayloadRequestSchema,
  RELATED_TASK_META_KEY,
  ErrorCode as McpErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';
import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GatewayPipeline } from './pipeline.ts';
import { endTaskWith, heldTaskOf, type TaskRegistry } from './tasks.ts';

export const GATEWAY_INFO = { name: 'warden', version: '0.1.0' };

/** Most JSON-RPC ids remembered as "gone before their handler started" (see abortCalls). */
const MAX_EARLY_ABORTS = 256;

/**
 * One MCP server per agent session, bound to the agent that authenticated it.
 * It only translates: tools/list and tools/call go to the pipeline, the
 * client's cancellation arrives as `extra.signal`, and progress goes back as
 * notifications on the same request's stream.
 *
 * The SDK aborts a handler only for `notifications/cancelled` or when the
 * whole transport closes; an agent whose HTTP connection simply drops is
 * invisible to it. So each running tools/call is registered here by its
 * JSON-RPC id, and the HTTP edge aborts it (with its own reason) when the
 * connection that carried it goes away.
 */
export class SessionServer {
  readonly server: Server;
  readonly #calls = new Map<RequestId, AbortController>();
  /** Ids whose connection went away before their handler registered (a close can beat the handler's first microtask). */
  readonly #early = new Map<RequestId, unknown>();

  /**
   * `tokenLive` answers whether the agent token a request was authenticated
   * with (its id travels as the SDK's `authInfo`) still stands; a call asks
   * again just before it is forwarded, so a token revoked while the call was
   * held for approval does not get it run.
   */
  constructor(
    pipeline: GatewayPipeline,
    tasks: TaskRegistry,
    agent: string,
    logger: Logger,
    tokenLive: (tokenId: string) => boolean,
  ) {
    const server = new Server(GATEWAY_INFO, {
      // Task-augmented tools/call (MCP 2025-11-25): the SDK serves tasks/* from this agent's view of the registry.
      capabilities: {
        tools: { listChanged: true },
        tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } },
      },
      taskStore: tasks.storeFor(agent),
      instructions:
        'Tools are provided by Warden on behalf of your organisation. A refused call comes back as an error result that says why; calls that need a human wait for their decision.',
    });
    this.server = server;
    // e.g. an answer for an agent whose connection is already gone: nothing to deliver, nothing to fix.
    server.onerror = (err) => logger.debug({ err: describeError(err), agent }, 'MCP session error');

    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await pipeline.listTools(agent) }));

    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const tokenId = extra.authInfo?.extra?.tokenId;
      // A message without the edge's token id cannot be vouched for: fail closed.
      const stillAuthorized = () => typeof tokenId === 'string' && tokenLive(tokenId);
      if (request.params.task) {
        // Answered at once with the task; the call goes on without this request (nor its connection).
        const { task, signal } = tasks.create(agent, request.params.task.ttl);
        const run = pipeline.callTool({
          agent,
          name: request.params.name,
          args: request.params.arguments,
          signal,
          stillAuthorized,
          tokenId: typeof tokenId === 'string' ? tokenId : undefined,
          task: heldTaskOf(task),
          onHeld: (held) => tasks.held(task.taskId, held),
        });
        void endTaskWith(tasks, task.taskId, run, logger, { agent, tool: request.params.name });
        logger.info({ agent, tool: request.params.name, taskId: task.taskId }, 'tools/call started as a task');
        return {
          task,
          // For hosts that hand the model something while the task runs (the spec's provisional key).
          _meta: {
            'io.modelcontextprotocol/model-immediate-response': `${request.params.name} is running as task ${task.taskId}. If it needs a human's approval it waits for that decision; do not assume it ran until the task completes with its result.`,
          },
        };
      }
      const token = request.params._meta?.progressToken;
      const onProgress =
        token === undefined
          ? undefined
          : (p: { progress: number; total?: number | undefined; message?: string | undefined }) => {
              extra
                .sendNotification({ method: 'notifications/progress', params: { progressToken: token, ...p } })
                .catch((err) => logger.debug({ err: describeError(err) }, 'progress notification not delivered'));
            };
      const call = this.#track(extra);
      try {
        return await pipeline.callTool({
          agent,
          name: request.params.name,
          args: request.params.arguments,
          signal: call.signal,
          onProgress,
          stillAuthorized,
          tokenId: typeof tokenId === 'string' ? tokenId : undefined,
        });
      } catch (err) {
        if (err instanceof McpError) throw err;
        // Never leak internals to the agent; the log has the details.
        logger.error({ err: describeError(err), agent, tool: request.params.name }, 'unexpected failure in tools/call');
        throw new McpError(
          McpErrorCode.InternalError,
          'Warden failed internally while handling this call; it was not completed',
        );
      } finally {
        call.done();
      }
    });

    // In place of the SDK's own tasks/result, which looks again every poll
    // interval (on real timers) and goes on looking after the agent's
    // connection is gone: this one answers the moment the task ends, and is
    // aborted with the connection like a tools/call.
    server.setRequestHandler(GetTaskPayloadRequestSchema, async (request, extra) => {
      const wait = this.#track(extra);
      try {
        const { taskId } = request.params;
        let result: CallToolResult;
        try {
          result = await tasks.result(taskId, agent, wait.signal);
        } catch (err) {
          // Not a wait cut short nor an unknown task: the call's own JSON-RPC error, its ending handed over like a result.
          if (!wait.signal.aborted && tasks.get(taskId, agent)) await pipeline.taskCollected(taskId, agent);
          throw err;
        }
        await pipeline.taskCollected(taskId, agent);
        return { ...result, _meta: { ...result._meta, [RELATED_TASK_META_KEY]: { taskId } } };
      } finally {
        wait.done();
      }
    });
  }

  /**
   * Our own controller for one request, following the SDK's (agent cancel,
   * transport close) and registered by JSON-RPC id, so the edge can abort it
   * with a reason of its own when its connection goes away.
   */
  #track(extra: { signal: AbortSignal; requestId: RequestId }): { signal: AbortSignal; done: () => void } {
    const call = new AbortController();
    const follow = () => call.abort(extra.signal.reason);
    if (extra.signal.aborted) follow();
    else extra.signal.addEventListener('abort', follow, { once: true });
    const id = extra.requestId;
    this.#calls.set(id, call);
    if (this.#early.has(id)) {
      const reason = this.#early.get(id);
      this.#early.delete(id);
      call.abort(reason);
    }
    return {
      signal: call.signal,
      done: () => {
        extra.signal.removeEventListener('abort', follow);
        if (this.#calls.get(id) === call) this.#calls.delete(id);
      },
    };
  }

  /** How many tools/call (and tasks/result) handlers are running in this session. */
  get runningCalls(): number {
    return this.#calls.size;
  }

  /**
   * A new request reuses these JSON-RPC ids: forget any stale early abort for
   * them, so only the request whose connection actually went away is aborted.
   */
  expect(requestIds: readonly RequestId[]): void {
    for (const id of requestIds) this.#early.delete(id);
  }

  /**
   * Aborts running tools/call handlers with `reason`: those with the given
   * JSON-RPC ids (the requests a dropped connection carried), or every one.
   * An id whose handler has not started yet is aborted as soon as it does.
   * Returns how many running calls were aborted.
   */
  abortCalls(reason: unknown, requestIds?: readonly RequestId[]): number {
    let n = 0;
    const ids = requestIds ?? [...this.#calls.keys()];
    for (const id of ids) {
      const call = this.#calls.get(id);
      if (call) {
        if (!call.signal.aborted) n++;
        call.abort(reason);
      } else if (requestIds) {
        if (this.#early.size >= MAX_EARLY_ABORTS) this.#early.delete(this.#early.keys().next().value!);
        this.#early.set(id, reason);
      }
    }
    return n;
  }
}
