/* Subcommands of the `dalle` command. Each takes the arguments after its
 * name and returns the process exit status (0 ok, 1 failure, 2 usage). */
#ifndef DALLE_CLI_COMMANDS_H
#define DALLE_CLI_COMMANDS_H

int cmd_info(int argc, char **argv);

/* Print "dalle: <message>" on stderr and return 1. */
int cli_error(const char *fmt, ...);

#endif
