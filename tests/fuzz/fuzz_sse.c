/* fuzz_sse.c - libFuzzer target for the OpenAI-compatible SSE stream
 * parser (chat/stream.h). The harness, input layout and invariants are
 * those of fuzz_ndjson.c, compiled here for CHAT_WIRE_OPENAI. */
#define FUZZ_WIRE CHAT_WIRE_OPENAI
#include "fuzz_ndjson.c"
