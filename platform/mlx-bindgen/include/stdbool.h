// bool as C17 spells it (libclang parses the headers as C17).
#pragma once
#define bool _Bool
