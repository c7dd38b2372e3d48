/* Generated from src/runtime/wire.ts by scripts/gen-wire-header.ts. Do not edit. */
#ifndef PIVOT_WIRE_H
#define PIVOT_WIRE_H

#define OP_JOIN_NAMESPACE 1
#define OP_FORK_SETUP 2
#define OP_SYNC 3
#define OP_UNSHARE 4
#define OP_TIME_OFFSETS 5
#define OP_FORK_INIT 6
#define OP_BECOME_NAMESPACE_ROOT 7
#define OP_MOUNT 8
#define OP_MOUNT_IN_ROOT 9
#define OP_MKDIR_IN_ROOT 10
#define OP_TOUCH_IN_ROOT 11
#define OP_MKNOD_IN_ROOT 12
#define OP_SYMLINK_IN_ROOT 13
#define OP_PIVOT_ROOT 14
#define OP_MOVE_ROOT 15
#define OP_MASK_PATH 16
#define OP_READONLY_PATH 17
#define OP_SET_HOSTNAME 18
#define OP_SET_DOMAINNAME 19
#define OP_WRITE_FILE 20
#define OP_SET_RLIMIT 21
#define OP_SETUP_TERMINAL 22
#define OP_CONNECT_SOCKET 23
#define OP_MAKE_FIFO 24
#define OP_WAIT_EXEC_FIFO 25
#define OP_SET_GROUPS 26
#define OP_SET_USER 27
#define OP_SET_CAPABILITIES 28
#define OP_NO_NEW_PRIVILEGES 29
#define OP_UMASK 30
#define OP_CHDIR 31
#define OP_RUN_HOOK 32
#define OP_NEW_SESSION 33
#define OP_EXEC 34
#define OP_PROPAGATION 35
#define OP_SET_BOUNDING_SET 36
#define OP_FIND_EXECUTABLE 37
#define OP_WAIT_FOR_INIT 39
#define OP_SECCOMP_INIT 40
#define OP_SECCOMP_ARCH 41
#define OP_SECCOMP_ATTR 42
#define OP_SECCOMP_RULE 43
#define OP_SECCOMP_LOAD 44
#define OP_TRACE 45
#define OP_OPEN_DIR_IN_ROOT 50
#define OP_COPY_DIR_IN_ROOT 51
#define OP_END 99

#define EV_SYNC 1
#define EV_INIT_PID 2
#define EV_ERROR 3
#define EV_READY 4
#define EV_EXITED 5
#define EV_HOOK_FAILED 6
#define EV_TRACE 7

#define SYNC_SETUP_CHILD_CREATED 1
#define SYNC_BEFORE_PIVOT 2

#define REPLY_CONTINUE 1
#define REPLY_ABORT 2

#define WIRE_TAG_INT 105
#define WIRE_TAG_STR 115
#define WIRE_MAX_MESSAGE 1048576

#endif
