{% macro mdq_setting(name, asset_class='asset_class', timeframe='timeframe', cast=none, symbol=none) %}
    {#-
        A threshold or severity of a check, per symbol, asset class and
        timeframe: the one resolver of every check's parameters (calendar and
        price checks).

        The dbt var `name` is a mapping whose keys are
        '<asset_class>:<timeframe>', either side may be '*' for any, or
        'symbol:<SYMBOL>:<timeframe>' (timeframe or '*') for one instrument.
        The most specific key wins: 'symbol:AAPL:1d', then 'symbol:AAPL:*',
        then 'crypto:1m', then 'crypto:*', then '*:1m', then '*:*' (which must
        exist: the default). Symbols match exactly (case-sensitive). Values
        are numbers or strings.
        Example: `mdq_gap_error_after_candles: {'*:*': 10, '*:1d': 3, '*:1m': 30}`
        gives 30 for any 1m series, 3 for daily, 10 otherwise. Override one
        parameter with one `dbt build --vars` entry holding the whole map (a
        --vars value replaces the var, it is not merged).

        Args:
            name: the var name, e.g. 'mdq_gap_error_after_candles',
                'mdq_outlier_z'.
            asset_class: SQL expression of the row's asset class (default the
                column asset_class).
            timeframe: SQL expression of the row's timeframe (default the
                column timeframe).
            cast: optional SQL type the whole expression is cast to, e.g.
                'double precision' (numbers otherwise render as written:
                integer or numeric literals; strings as quoted text).
            symbol: SQL expression of the row's symbol; default the column
                symbol of the same relation as `asset_class` (e.g.
                'candidates.symbol' for 'candidates.asset_class'). Only
                rendered when the var has symbol keys.

        Returns:
            a SQL expression: the literal of '*:*' when it is the only key,
            else a case expression over the keys, most specific first.

        Raises:
            compiler error: the var is not a mapping, has no '*:*' key or a
                key shaped neither '<asset_class>:<timeframe>' nor
                'symbol:<SYMBOL>:<timeframe>'.
    -#}
    {%- set table = var(name) -%}
    {%- if table is not mapping or '*:*' not in table -%}
        {{ exceptions.raise_compiler_error(
            "mdq: var '" ~ name ~ "' must be a mapping with a '*:*' default, got " ~ table) }}
    {%- endif -%}
    {%- set ranked = {'symbol_both': [], 'symbol': [], 'both': [], 'asset': [], 'timeframe': []} -%}
    {%- if symbol is none -%}
        {%- set symbol = (asset_class.rsplit('.', 1)[0] ~ '.symbol') if '.' in asset_class else 'symbol' -%}
    {%- endif -%}
    {%- for key in table -%}
        {%- set symbol_key = modules.re.match('^symbol:([^:]+):([0-9]+[smhdw]|\\*)$', key) -%}
        {%- if symbol_key -%}
            {%- if symbol_key.group(2) == '*' -%}
                {%- do ranked['symbol'].append([symbol_key.group(1), key]) -%}
            {%- else -%}
                {%- do ranked['symbol_both'].append([symbol_key.group(1), symbol_key.group(2), key]) -%}
            {%- endif -%}
        {%- elif not modules.re.match('^([a-z0-9_]+|\\*):([0-9]+[smhdw]|\\*)$', key) -%}
            {{ exceptions.raise_compiler_error(
                "mdq: var '" ~ name ~ "' has key '" ~ key
                ~ "'; expected '<asset_class>:<timeframe>' or 'symbol:<SYMBOL>:<timeframe>'"
                ~ " with '*' for any") }}
        {%- else -%}
        {%- set parts = key.split(':') -%}
        {%- if parts[0] != '*' and parts[1] != '*' -%}
            {%- do ranked['both'].append(parts) -%}
        {%- elif parts[0] != '*' -%}
            {%- do ranked['asset'].append(parts) -%}
        {%- elif parts[1] != '*' -%}
            {%- do ranked['timeframe'].append(parts) -%}
        {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if cast %}({% endif -%}
    {%- if not (ranked['symbol_both'] or ranked['symbol'] or ranked['both'] or ranked['asset'] or ranked['timeframe']) -%}
        {{ mdq_literal(table['*:*']) }}
    {%- else -%}
    (case
        {%- for parts in ranked['symbol_both'] %}
        when {{ symbol }} = {{ mdq_literal(parts[0]) }} and {{ timeframe }} = '{{ parts[1] }}'
            then {{ mdq_literal(table[parts[2]]) }}
        {%- endfor %}
        {%- for parts in ranked['symbol'] %}
        when {{ symbol }} = {{ mdq_literal(parts[0]) }}
            then {{ mdq_literal(table[parts[1]]) }}
        {%- endfor %}
        {%- for parts in ranked['both'] %}
        when {{ asset_class }} = '{{ parts[0] }}' and {{ timeframe }} = '{{ parts[1] }}'
            then {{ mdq_literal(table[parts[0] ~ ':' ~ parts[1]]) }}
        {%- endfor %}
        {%- for parts in ranked['asset'] %}
        when {{ asset_class }} = '{{ parts[0] }}'
            then {{ mdq_literal(table[parts[0] ~ ':*']) }}
        {%- endfor %}
        {%- for parts in ranked['timeframe'] %}
        when {{ timeframe }} = '{{ parts[1] }}'
            then {{ mdq_literal(table['*:' ~ parts[1]]) }}
        {%- endfor %}
        else {{ mdq_literal(table['*:*']) }}
    end)
    {%- endif -%}
    {%- if cast %})::{{ cast }}{% endif -%}
{%- endmacro %}
