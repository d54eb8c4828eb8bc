"""Small texts written for these tests (the project ships no third-party text): Polish and French
prose and English prose with dialogue, verse indentation and runs of spaces."""

from __future__ import annotations

POLISH = """\
Rozdział pierwszy

Stary młynarz Józef wstał przed świtem, jak co dzień od czterdziestu lat. Przez okno
widział mgłę nad łąką i ciemną ścianę lasu, a dalej wieżę kościoła w Żabiej Woli.
— Znowu będzie padać — mruknął do siebie i zszedł po skrzypiących schodach do kuchni.

Żona spała jeszcze. Józef rozpalił ogień, nastawił wodę na herbatę i usiadł przy stole.
Na ławie leżał list od syna, który od roku mieszkał w Krakowie. Czytał go już trzy razy,
ale wciąż nie wiedział, co odpowiedzieć. Syn pisał, że chce wrócić, że miasto go męczy,
że tęskni za rzeką, za zapachem mąki i za ciszą wieczorów nad stawem.

— Niech wraca — powiedziała żona, która stanęła w drzwiach. — Młyn potrzebuje młodych rąk.
— A jeśli za rok znów zechce odejść? — zapytał Józef.
— To odejdzie. Ludzie zawsze odchodzą i wracają, tak jak ptaki jesienią i wiosną.

Józef spojrzał na nią długo, potem wziął pióro i zaczął pisać. Słońce wyszło zza chmur,
mgła opadła na łąkę, a na podwórzu zapiał kogut, głośno i uparcie, jakby chciał obudzić
całą wieś. Gęsi szły gęsiego ku stawowi, źrebię skakało przy płocie, a pies Łatek
szczekał na wiatr. Był to zwyczajny poranek, jeden z tysiąca, ale Józef zapamiętał go
na zawsze, bo tego dnia postanowił, że młyn zostanie w rodzinie.
"""

FRENCH = """\
Chapitre premier

La vieille maison des Dubois se trouvait au bout du chemin, près de l'église. Chaque matin,
Hélène ouvrait les volets et regardait la rivière qui coulait lentement sous le pont.
« Il fera beau aujourd'hui », disait-elle à son frère, qui ne répondait jamais.

Ce jour-là pourtant, François leva les yeux de son journal. « Tu crois ? » demanda-t-il.
Elle sourit ; il y avait si longtemps qu'il ne lui avait pas parlé ainsi. Ils déjeunèrent
ensemble dans la cuisine, où flottait une odeur de café et de pain grillé, et l'on entendit
au loin les cloches de l'école. À midi, le facteur apporta une lettre de Marseille.
"""

ENGLISH = """\
CHAPTER I.

"Well," said the old man, "it is a fine day; isn't it?" He looked at the sea (which was
grey, as always) and smiled. 'You'll see,' he added, 'the boats come back at noon.'

    The wind is cold upon the hill,
      The water dark and deep;
    And I must go where all is still,
      And there lie down to sleep.

Mr. Brown wasn't sure.  He had 12 boats, and 3 of them were old -- very old -- and the
harbour-master of London had said so twice.
"""

ALL = POLISH + "\n" + FRENCH + "\n" + ENGLISH
