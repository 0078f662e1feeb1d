/*
 * Functions that are easy to misuse turn into compile errors. dcms/err.h
 * includes the C library's string and stdio headers first and then this one,
 * so every dcms file sees the list.
 */
#ifndef DCMS_BANNED_H
#define DCMS_BANNED_H

#define DCMS_BANNED(func) sorry_##func##_is_banned_in_dcms

#undef strcpy
#define strcpy(x, y) DCMS_BANNED(strcpy)
#undef strcat
#define strcat(x, y) DCMS_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) DCMS_BANNED(strncpy)
#undef sprintf
#define sprintf(...) DCMS_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) DCMS_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) DCMS_BANNED(strtok)
#undef atoi
#define atoi(x) DCMS_BANNED(atoi)
#undef atol
#define atol(x) DCMS_BANNED(atol)
#undef gets
#define gets(x) DCMS_BANNED(gets)

#endif
