// A small use of the types openapi-typescript generates from the served /openapi.json
// (tests/e2e/test_generated_clients.py type-checks it with tsc; it is never run).
import type { components, paths } from "./api";

type Schemas = components["schemas"];
type CreateJob = paths["/v1/jobs"]["post"];
type NewJob = CreateJob["requestBody"]["content"]["application/json"];
type Accepted = CreateJob["responses"][202]["content"]["application/json"];
type Result = paths["/v1/jobs/{job_id}/result"]["get"]["responses"][200]["content"]["application/json"];
type Problem = paths["/v1/jobs/{job_id}"]["get"]["responses"]["default"]["content"]["application/json"];

export const hello: NewJob = {
  pipeline: "generate",
  input: { generate: { model: "test-streamer", prompt: "hello from switchboard" } },
  labels: { team: "search" },
};

export function isOver(job: Accepted): boolean {
  const terminal: Array<Schemas["Job"]["state"]> = ["SUCCEEDED", "FAILED", "CANCELLED"];
  return terminal.includes(job.state);
}

export function resultText(result: Result): string {
  return result.generate?.text ?? result.chat?.text ?? "";
}

// One frame of GET /v1/jobs/{job_id}/events: its data is a JobEvent (or, last, an Error).
export function onFrame(frame: Schemas["JobEventFrame"]): string {
  if (frame.event === "error") {
    const failure = JSON.parse(frame.data) as Problem;
    return `${failure.error.status}: ${failure.error.message}`;
  }
  const event = JSON.parse(frame.data) as Schemas["JobEvent"];
  // int64 fields are strings in proto3 JSON (numbers are read too).
  const index: string | number | undefined = event.token?.index;
  return `${event.cursor ?? ""} ${event.stateChanged?.state ?? ""}${event.token?.text ?? ""} ${index ?? ""}`;
}

export function reason(problem: Problem): string | undefined {
  const info = problem.error.details.find(
    (detail): detail is Schemas["ErrorInfo"] =>
      detail["@type"] === "type.googleapis.com/google.rpc.ErrorInfo",
  );
  return info?.reason;
}

// The types refuse what the edge refuses.
// @ts-expect-error: not a pipeline of the catalog
export const unknownPipeline: NewJob = { pipeline: "teleport", input: {} };
// @ts-expect-error: a job needs its input
export const noInput: NewJob = { pipeline: "generate" };
// @ts-expect-error: createTime is a string (RFC 3339), not a number
export const badTime: Schemas["Job"]["createTime"] = 1700000000;
// @ts-expect-error: a state the Job does not have
export const badState: Schemas["Job"]["state"] = "NAPPING";

// POST /v1/chat/completions, whole (not streamed): typed request and answer.
type Chat = paths["/v1/chat/completions"]["post"];
type ChatRequest = Chat["requestBody"]["content"]["application/json"];
type ChatAnswer = Chat["responses"][200]["content"]["application/json"];

export const chat: ChatRequest = {
  model: "test-streamer",
  messages: [{ role: "user", content: "one two three" }],
  max_tokens: 4,
  tools: [],
};

export function answerText(answer: ChatAnswer): string {
  return answer.choices[0]?.message.content ?? "";
}

// @ts-expect-error: a tool is OpenAI's object, not a bare name
export const bareTool: ChatRequest = { ...chat, tools: ["lookup"] };
// @ts-expect-error: log probabilities are refused, so logprobs can only be false
export const withLogprobs: ChatRequest = { ...chat, logprobs: true };
