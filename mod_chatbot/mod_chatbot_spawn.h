/* mod_chatbot_spawn.h - running one program without a shell
 * (mod_chatbot_spawn.c), for the commands of mod_chatbot_exec.c. */
#ifndef MOD_CHATBOT_SPAWN_H
#define MOD_CHATBOT_SPAWN_H

#include "apr.h"
#include "chat/cmd.h"

/* How a run ended. */
typedef struct {
    int exit_code; /* -1 unless it exited */
    int signal;    /* the signal that ended it, 0 if none */
    int timed_out;
    int truncated;
    int stopped;
    int reaped;
    int escaped; /* processes outside the group killed for holding the pipe */
    apr_int64_t duration_ms;
} chatbot_run_result_t;

/* Asked between reads: non-zero stops the run (its process group is killed). */
typedef int chatbot_stop_fn(void *baton);

/* Runs argv (argv[0] = path) in cwd with an empty environment, /dev/null as
 * stdin and stdout+stderr into out, for at most timeout_ms; the program's
 * whole process group is killed at the end, and so is anything that left
 * the group still holding the pipe. Returns 0 when the program ran (res
 * filled), else an errno value (it could not be started). */
int chatbot_spawn_run(const char *path, const char *cwd, apr_int64_t timeout_ms,
                      const char *const *argv, chat_cmd_output_t *out,
                      chatbot_stop_fn *should_stop, void *baton,
                      chatbot_run_result_t *res);

#endif
